"""Si dimers to pentamers with Stillinger-Weber energies split into two- and three-body parts (Fig 6).

Section V.1 of the paper trains linear ACE models on 500 Si pentamers, then
replaces 50 of them by dimers, 50 more by trimers and 50 more by tetramers, and
compares each model's body-order components with the Si-Si dimer curve. The
paper's labels were DFT; this offline generator labels with the
**Stillinger-Weber potential** (PRB 31, 5262; matscipy), an empirical
potential and *not* DFT, chosen because its body-order split is known exactly:

.. math::

    E = \\sum_{i<j} \\epsilon f_2(r_{ij}/\\sigma)
        + \\sum_{i} \\sum_{j<k} \\epsilon f_3(r_{ij}/\\sigma, r_{ik}/\\sigma, \\theta_{jik})

with :math:`f_2(x) = A (B x^{-p} - x^{-q}) e^{1/(x - a)}` for :math:`x < a`
(cutoff :math:`a\\sigma` = 3.771 A, pair minimum -2.168 eV at 2.352 A) and an
isolated atom at 0 eV. Each structure stores

- ``info["energy"]``: total SW energy (eV); ``arrays["forces"]``: total SW forces (eV/A);
- ``info["energy_two_body"]``: SW energy with the three-body term switched off (eV);
- ``info["energy_three_body"]``: ``energy - energy_two_body`` (eV), zero for a dimer;
- ``info["n_atoms"]`` and ``info["subset"]``, one of "dimer", "trimer", "tetramer",
  "pentamer" (grown clusters) or "dimer_curve" (Si2 on an even grid of
  separations, with ``info["separation"]`` in A).

The clusters are grown as the paper's generator grows them
(section_3/dataset_preparations/Si10_grow_clusters.ipynb of its repository), with
:func:`experiments.datasets.si_clusters.grow_cluster`:

- bonds of 2.0-2.5 A from a random existing atom in a random direction, the
  length drawn as ``2.0 + u^(1/3) * 0.5`` A with ``u ~ U[0, 1]`` (``bond_law``
  "cube_root", the law of the paper's code; "uniform" is also offered). 2.0 A is
  0.88 eV up the SW repulsive wall (pair energy -1.29 eV, minimum -2.168 eV at
  2.352 A); no two atoms closer than 2.0 A;
- a constant-density size cap: every interatomic distance of an n-atom cluster
  below ``density_diameter * (n / 2)^(1/3)``, the diameter of a sphere holding n
  atoms at the density of two atoms in a sphere of diameter ``density_diameter``
  = 4.121 A (the paper's distance at which its DFT dimer's cohesive energy is 25%
  of its minimum): 4.12, 4.72, 5.19 and 5.59 A for n = 2 ... 5. It binds from
  trimers on, and keeps pentamers compact: a purified nu = 4 block is zero only if
  no atom has all four others within the ACE cutoff (5.5 A), which needs three
  pairs beyond 5.5 A; of 20,000 pentamers grown so, 1,213 had one such pair, 29
  had two and none had three;
- at most 6 neighbours within 2.5 A (the paper's radius is 2.75 A); this never
  binds for five atoms or fewer.

Departures from that generator: a cluster whose growth stalls (16 x 200 rejected
proposals) is started again, where the paper's drops its last atom after 10
rejections; the paper then keeps 1,000 of 10,000 clusters per size by
farthest-point sampling, which is not done here (every grown cluster is kept);
and the labels are Stillinger-Weber, not DFT. Its SW pair term reaches 3.77 A,
so atoms farther apart than that (up to 5.59 A in a pentamer) interact only
through the three-body term of a common neighbour; the ACE cutoff is 5.5 A. Before
this generator followed the paper, the bonds were drawn uniformly in [2.0, 3.6] A with no size cap: 30 of
500 quick-scale test pentamers then had an all-zero purified nu = 4 block.
The dimer curve spans [2.0, 4.0] A by default: the dimers' 2.0-2.5 A, the longer
pair distances of the larger clusters, the SW pair cutoff and a flat zero beyond it.

matscipy's many-body calculator costs about 2 ms per total-energy-and-forces
call and 0.1 ms per two-body energy on these clusters, so the paper's counts
take seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import Atoms

from .io import DatasetError
from .references import calculator, label
from .si_clusters import BOND_LAWS, grow_cluster

__all__ = ["Params", "SUBSETS", "generate", "prepare", "size_cap", "stillinger_weber_split"]

#: stream tag mixed into the seed (differs from si_clusters', so the two datasets draw different numbers)
_STREAM = 7302

#: subset name of the grown clusters by atom count
SUBSETS = {2: "dimer", 3: "trimer", 4: "tetramer", 5: "pentamer"}


@dataclasses.dataclass
class Params:
    # labels: Stillinger-Weber Si (matscipy); the only one with a known body-order split
    reference: str = "stillinger-weber"
    n_dimers: int = 100  # grown Si2 (paper's training sets use 50)
    n_trimers: int = 100  # grown Si3 (paper's training sets use 50)
    n_tetramers: int = 100  # grown Si4 (paper's training sets use 50)
    n_pentamers: int = 1000  # grown Si5 (paper's training sets use 500; the rest are for testing)
    bond_min: float = 2.0  # shortest bond drawn, and shortest distance allowed between any two atoms (A; paper: 2.0)
    bond_max: float = 2.5  # longest bond drawn, and the neighbour radius of the coordination rule (A; paper: 2.5)
    bond_law: str = "cube_root"  # law of the drawn bond length: uniform | cube_root (paper's code: cube_root)
    # A; an n-atom cluster's interatomic distances stay below density_diameter * (n / 2)^(1/3) (paper: 4.121);
    # None: no cap
    density_diameter: float | None = 4.121
    max_coordination: int = 6  # most neighbours (within bond_max) any atom may have
    curve_min: float = 2.0  # shortest separation of the dimer curve (A)
    curve_max: float = 4.0  # longest separation of the dimer curve (A)
    n_curve: int = 41  # points of the dimer curve, evenly spaced (41: every 0.05 A)


def size_cap(params: Params, n_atoms: int) -> float | None:
    """The constant-density cap on an ``n_atoms`` cluster's interatomic distances (A), or None.

    .. math::

        d_{max}(n) = d_{density} (n / 2)^{1/3}

    the diameter of a sphere of volume n / 2 times that of a sphere of diameter
    ``params.density_diameter`` (paper: 4.121 A).
    """
    if params.density_diameter is None:
        return None
    return float(params.density_diameter) * (n_atoms / 2) ** (1 / 3)


def stillinger_weber_split(atoms: Atoms, total=None, two_body=None) -> Atoms:
    """Label a cluster with Stillinger-Weber: total energy and forces, and the two-/three-body split.

    Parameters
    ----------
    atoms : ase.Atoms
        An isolated Si cluster (any cell is ignored; no periodicity).
    total, two_body : ase calculator, optional
        The full SW calculator and the one with the three-body term off
        (:func:`experiments.datasets.references.stillinger_weber_calculator`),
        built when not given; pass them to reuse them.

    Returns
    -------
    ase.Atoms
        A copy with ``info["energy"]``, ``info["energy_two_body"]``,
        ``info["energy_three_body"]`` (eV), ``arrays["forces"]`` (eV/A), the
        reference's provenance, no cell and ``pbc`` False.
    """
    total = total if total is not None else calculator("stillinger-weber")
    two_body = two_body if two_body is not None else calculator("stillinger-weber", three_body=False)
    pos = atoms.get_positions()
    # matscipy's neighbour list needs a non-singular cell even without periodicity: lend one
    boxed = atoms.copy()
    boxed.pbc = False
    boxed.set_cell(np.eye(3) * (np.ptp(pos, axis=0).max() + 10.0))
    labelled = label(boxed, "stillinger-weber", calc=total)
    boxed.calc = two_body
    e2 = float(boxed.get_potential_energy())
    boxed.calc = None
    labelled.set_cell(np.zeros((3, 3)))
    labelled.set_positions(pos)
    labelled.info["energy_two_body"] = e2
    labelled.info["energy_three_body"] = labelled.info["energy"] - e2
    return labelled


def _check(params: Params) -> None:
    if params.reference != "stillinger-weber":
        raise ValueError(
            f"reference={params.reference!r}: si_nmers needs 'stillinger-weber', the reference whose two- and "
            "three-body parts are known"
        )
    for key in ("n_dimers", "n_trimers", "n_tetramers", "n_pentamers", "n_curve"):
        if getattr(params, key) < 0:
            raise ValueError(f"{key}={getattr(params, key)} is negative")
    if params.bond_law not in BOND_LAWS:
        raise ValueError(f"bond_law={params.bond_law!r}: expected one of {list(BOND_LAWS)}")
    if params.density_diameter is not None and not params.density_diameter > params.bond_min:
        raise ValueError(f"density_diameter={params.density_diameter} A: the cap on a dimer, it must exceed "
                         f"bond_min={params.bond_min} A (or be null for no cap)")
    if not 0.0 < params.curve_min <= params.curve_max:
        raise ValueError(f"dimer curve [{params.curve_min}, {params.curve_max}] A: need 0 < curve_min <= curve_max")


def generate(params: Params, seed: int) -> list[Atoms]:
    """Grow and label Si n-mers (n = 2..5) and a dimer curve; deterministic under ``seed``.

    Returns
    -------
    list of ase.Atoms
        ``n_dimers`` dimers, ``n_trimers`` trimers, ``n_tetramers`` tetramers,
        ``n_pentamers`` pentamers (each centred on its centroid), then ``n_curve``
        dimers along x at separations ``linspace(curve_min, curve_max, n_curve)`` (A);
        labels as described in the module docstring.
    """
    _check(params)
    total = calculator("stillinger-weber")
    two_body = calculator("stillinger-weber", three_body=False)
    rules = dict(bond_min=params.bond_min, bond_max=params.bond_max, max_coordination=params.max_coordination,
                 bond_law=params.bond_law)
    counts = {2: params.n_dimers, 3: params.n_trimers, 4: params.n_tetramers, 5: params.n_pentamers}
    frames: list[Atoms] = []
    for n_atoms, count in counts.items():
        rng = np.random.default_rng([int(seed), _STREAM, n_atoms])
        for _ in range(count):
            pos = grow_cluster(n_atoms, rng, max_diameter=size_cap(params, n_atoms), **rules)
            atoms = stillinger_weber_split(Atoms(f"Si{n_atoms}", positions=pos - pos.mean(axis=0)), total, two_body)
            atoms.info.update(n_atoms=n_atoms, subset=SUBSETS[n_atoms])
            frames.append(atoms)
    for r in np.linspace(params.curve_min, params.curve_max, params.n_curve):
        dimer = Atoms("Si2", positions=[[-r / 2, 0.0, 0.0], [r / 2, 0.0, 0.0]])
        atoms = stillinger_weber_split(dimer, total, two_body)
        atoms.info.update(n_atoms=2, subset="dimer_curve", separation=float(r))
        frames.append(atoms)
    return frames


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Set ``n_atoms`` and, where a frame from a file has none, its subset from its atom count.

    A frame without ``info["subset"]`` becomes "dimer", "trimer", "tetramer" or
    "pentamer" by its number of atoms (2 to 5; any other count is refused); a
    frame with one keeps it if it is one of those or "dimer_curve". Body-order
    parts (``energy_two_body``, ``energy_three_body``) are kept if the file has
    them and never invented.
    """
    allowed = set(SUBSETS.values()) | {"dimer_curve"}
    for i, atoms in enumerate(frames):
        n = len(atoms)
        atoms.info["n_atoms"] = n
        subset = atoms.info.get("subset")
        if subset is None:
            if n not in SUBSETS:
                raise DatasetError(f"si_nmers, frame {i}: {n} atoms and no info['subset']; n-mers have 2 to 5 atoms")
            atoms.info["subset"] = SUBSETS[n]
        elif subset not in allowed:
            raise DatasetError(f"si_nmers, frame {i}: subset {subset!r} is not one of {sorted(allowed)}")
    return frames
