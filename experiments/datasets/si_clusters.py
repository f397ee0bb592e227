"""Silicon clusters of 3 to 10 atoms, grown atom by atom and farthest-point sampled (Figs 1-2, MACE).

The paper (Section III and its Supplementary Information) grows Si clusters one
atom at a time: each new atom sits at a bond length drawn uniformly in
[2.0, 2.5] A from a randomly chosen existing atom, in a uniformly random
direction, and is rejected if it comes closer than the minimum bond length to
any atom or if any atom would then have more than 6 neighbours within the
maximum bond length. 10,000 candidates are grown per size and 1,000 per size are
kept by farthest-point sampling (FPS).

Here the FPS descriptor is the **sorted vector of all interatomic distances**
(A), of length n (n - 1) / 2 for an n-atom cluster. It is invariant under
rotations, translations and permutations of the atoms, costs nothing to
compute, and the Euclidean distance between two such vectors is a lower bound
on how far apart the two clusters' distance matrices are under the best
matching of atoms. FPS is done per size, so all vectors compared have the same
length.

Reference
---------
The paper's labels are DFT (FHI-aims, PBEsol, tight basis, atomic ZORA). This
offline generator labels with **GFN2-xTB (tblite)** by default, a semi-empirical
tight-binding method, *not* DFT; every structure records its reference method
(``info["reference_method"]``). A structure whose SCF does not converge is
skipped and replaced by the next structure in FPS order (the number skipped is
logged).

Each structure is labelled by a **fresh** tblite calculator. A reused tblite
ASE calculator restarts the SCF from the previous structure's wavefunction when
the atom count is unchanged; on these clusters that restart was measured to
converge to wrong states (Si3 energies of -158 eV instead of -135 eV, Si6 of
-300 eV instead of -271 eV, for tens of consecutive structures after one SCF
failure), and in any case makes a label depend on the structure labelled
before it. A fresh calculator costs nothing measurable.

The electronic temperature defaults to 1000 K rather than tblite's 300 K: at
300 K the SCF failed on 2-4 of 40 FPS-selected Si9 and Si10 clusters (each
failure costing 250 SCF cycles), and skipping failures would bias FPS against
exactly the unusual structures it is meant to keep; at 1000 K none of those
failed and labelling was twice as fast (at quick scale, 2 of the 102 Si10
picks still fail and are replaced). Energies are then Mermin free
energies (eV), to which the forces are consistent (checked by finite
differences).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed

from .io import DatasetError
from .references import label

__all__ = [
    "BOND_LAWS",
    "Params",
    "grow_cluster",
    "grow_pool",
    "distance_descriptor",
    "farthest_point_sampling",
    "assign_subsets",
    "generate",
    "prepare",
]

log = logging.getLogger(__name__)

#: stream tag mixed into the seed, so that this dataset's random numbers differ
#: from those of other datasets generated with the same master seed
_STREAM = 7301

#: laws of the drawn bond length in :func:`grow_cluster`
BOND_LAWS = ("uniform", "cube_root")


@dataclasses.dataclass
class Params:
    reference: str = "gfn2-xtb"  # labels: gfn2-xtb | gfn1-xtb (tblite); the paper's were DFT (FHI-aims PBEsol)
    min_atoms: int = 3  # smallest cluster size (atoms)
    max_atoms: int = 10  # largest cluster size (atoms)
    n_candidates: int = 10000  # clusters grown per size before farthest-point sampling (paper: 10,000)
    n_keep: int = 1000  # clusters kept per size by farthest-point sampling (paper: 1,000)
    bond_min: float = 2.0  # shortest bond drawn, and shortest distance allowed between any two atoms (A)
    bond_max: float = 2.5  # longest bond drawn, and the neighbour radius of the coordination rule (A)
    max_coordination: int = 6  # most neighbours (within bond_max) any atom may have
    validation_fraction: float = 0.1  # share of each size in subset "validation" (paper: 1000 of 10,000)
    test_fraction: float = 0.1  # share of each size in subset "test" (paper: 1000 of 10,000); the rest is "train"
    spare_fraction: float = 0.2  # extra FPS picks per size, used in order if the SCF of a kept cluster fails
    electronic_temperature: float = 1000.0  # tblite electronic temperature (K); 300 K fails SCF on ~5-10% of Si9-10
    accuracy: float = 1.0  # tblite numerical accuracy (1 = default; smaller is tighter)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    """An independent random stream for this dataset, seed and tags (e.g. the cluster size)."""
    return np.random.default_rng([int(seed), _STREAM, *map(int, tags)])


def grow_cluster(
    n_atoms: int,
    rng: np.random.Generator,
    bond_min: float = 2.0,
    bond_max: float = 2.5,
    max_coordination: int = 6,
    max_diameter: float | None = None,
    bond_law: str = "uniform",
    batch: int = 16,
    max_batches: int = 200,
    max_restarts: int = 100,
) -> np.ndarray:
    """Grow one cluster atom by atom; return its positions, shape (n_atoms, 3), in A.

    The first atom sits at the origin. Each further atom is proposed at a
    distance ``r`` in [bond_min, bond_max] (A) from an existing atom chosen
    uniformly, along a direction uniform on the sphere, and accepted only if

    - its distance to every atom is at least ``bond_min``,
    - no atom (new or old) has more than ``max_coordination`` neighbours
      within ``bond_max`` (distance <= bond_max), and
    - if ``max_diameter`` is given, its distance to every atom is below
      ``max_diameter`` (the cluster's largest interatomic distance stays below it).

    ``bond_law`` is the law of ``r``: "uniform", ``r ~ U[bond_min, bond_max]``, or
    "cube_root", ``r = bond_min + u^(1/3) (bond_max - bond_min)`` with ``u ~ U[0, 1]``
    (density 3 (r - bond_min)^2 / (bond_max - bond_min)^3, the law of the paper's
    section_3 grower).

    Proposals are drawn ``batch`` at a time and the first acceptable one is
    taken; after ``max_batches`` batches without success the cluster is
    restarted. The result is connected by construction (every atom is within
    ``bond_max`` of the atom it grew from).

    Parameters
    ----------
    n_atoms : int
        Number of atoms, >= 1.
    rng : numpy.random.Generator
        Source of randomness; the result is a deterministic function of its state.
    bond_min, bond_max : float
        Range of the drawn bond lengths (A), 0 < bond_min <= bond_max.
    max_coordination : int
        Largest number of neighbours within ``bond_max`` of any atom, >= 1.
    max_diameter : float, optional
        Every interatomic distance stays strictly below it (A), > bond_min; None: no cap.
    bond_law : str
        "uniform" or "cube_root", the law of the drawn bond length (above).

    Returns
    -------
    numpy.ndarray
        Positions (A), shape (n_atoms, 3), float64.
    """
    if n_atoms < 1:
        raise ValueError(f"n_atoms={n_atoms}: a cluster needs at least one atom")
    if not 0.0 < bond_min <= bond_max:
        raise ValueError(f"bond range [{bond_min}, {bond_max}] A: need 0 < bond_min <= bond_max")
    if max_coordination < 1 and n_atoms > 1:
        raise ValueError(f"max_coordination={max_coordination}: no atom could have a neighbour")
    if max_diameter is not None and not max_diameter > bond_min:
        raise ValueError(f"max_diameter={max_diameter} A: must exceed bond_min={bond_min} A, or no bond fits")
    if bond_law not in BOND_LAWS:
        raise ValueError(f"bond_law={bond_law!r}: expected one of {list(BOND_LAWS)}")
    for _ in range(max_restarts):
        pos = np.zeros((n_atoms, 3))
        coordination = np.zeros(n_atoms, dtype=int)
        m = 1
        while m < n_atoms:
            for _ in range(max_batches):
                anchor = rng.integers(0, m, size=batch)
                direction = rng.normal(size=(batch, 3))
                direction /= np.linalg.norm(direction, axis=1, keepdims=True)
                if bond_law == "uniform":
                    length = rng.uniform(bond_min, bond_max, size=batch)
                else:  # cube_root
                    length = bond_min + rng.uniform(size=batch) ** (1 / 3) * (bond_max - bond_min)
                trial = pos[anchor] + length[:, None] * direction  # (batch, 3)
                d = np.linalg.norm(trial[:, None, :] - pos[None, :m, :], axis=-1)  # (batch, m)
                neighbour = d <= bond_max
                ok = (
                    (d >= bond_min).all(axis=1)
                    & (neighbour.sum(axis=1) <= max_coordination)
                    & (coordination[None, :m] + neighbour <= max_coordination).all(axis=1)
                )
                if max_diameter is not None:
                    ok &= (d < max_diameter).all(axis=1)
                if ok.any():
                    k = int(np.argmax(ok))
                    pos[m] = trial[k]
                    coordination[:m] += neighbour[k]
                    coordination[m] = int(neighbour[k].sum())
                    m += 1
                    break
            else:  # no acceptable site: start this cluster again
                break
        if m == n_atoms:
            return pos
    raise RuntimeError(
        f"could not grow a {n_atoms}-atom cluster with bonds in [{bond_min}, {bond_max}] A, coordination "
        f"<= {max_coordination} and diameter < {max_diameter} A in {max_restarts} attempts"
    )


def grow_pool(n_atoms: int, n_candidates: int, rng: np.random.Generator, **rules) -> np.ndarray:
    """``n_candidates`` clusters of ``n_atoms`` from :func:`grow_cluster`; shape (n_candidates, n_atoms, 3), A."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates={n_candidates}: need at least one candidate")
    return np.stack([grow_cluster(n_atoms, rng, **rules) for _ in range(n_candidates)])


def distance_descriptor(positions: np.ndarray) -> np.ndarray:
    """Sorted interatomic distances, a rotation-, translation- and permutation-invariant descriptor.

    Parameters
    ----------
    positions : numpy.ndarray
        Positions (A) of one cluster, shape (n, 3), or of several of the same
        size, shape (m, n, 3).

    Returns
    -------
    numpy.ndarray
        The n (n - 1) / 2 distances (A) in increasing order, shape (n (n - 1) / 2,)
        or (m, n (n - 1) / 2).
    """
    pos = np.asarray(positions, dtype=float)
    if pos.ndim not in (2, 3) or pos.shape[-1] != 3:
        raise ValueError(f"positions of shape {pos.shape}: expected (n, 3) or (m, n, 3)")
    n = pos.shape[-2]
    i, j = np.triu_indices(n, k=1)
    d = np.linalg.norm(pos[..., i, :] - pos[..., j, :], axis=-1)
    return np.sort(d, axis=-1)


def farthest_point_sampling(descriptors: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` rows picked greedily, each the farthest from those already picked.

    The first pick is the row farthest from the mean row (deterministic). Each
    further pick maximises :math:`\\min_{s \\in S} \\lVert x - x_s \\rVert_2`
    over the rows not yet picked; ties go to the lowest index.

    Parameters
    ----------
    descriptors : numpy.ndarray
        Shape (n_samples, n_features).
    n : int
        Number of rows to pick, 1 <= n <= n_samples.

    Returns
    -------
    numpy.ndarray
        Integer indices, shape (n,), in the order they were picked.

    Raises
    ------
    ValueError
        If ``n`` is out of range, or if fewer than ``n`` distinct rows exist (a pick
        would be a duplicate of an earlier one).
    """
    x = np.asarray(descriptors, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"descriptors of shape {x.shape}: expected (n_samples, n_features)")
    if not 1 <= n <= len(x):
        raise ValueError(f"cannot pick n={n} of {len(x)} samples")
    picked = np.empty(n, dtype=int)
    picked[0] = int(np.argmax(np.linalg.norm(x - x.mean(axis=0), axis=1)))
    gap = np.linalg.norm(x - x[picked[0]], axis=1)
    for k in range(1, n):
        nxt = int(np.argmax(gap))
        if gap[nxt] <= 0.0:
            raise ValueError(f"only {k} distinct samples among {len(x)}: cannot pick n={n} distinct ones")
        picked[k] = nxt
        np.minimum(gap, np.linalg.norm(x - x[nxt], axis=1), out=gap)
    return picked


def assign_subsets(n: int, validation_fraction: float, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Random "train" / "validation" / "test" labels for ``n`` samples, shape (n,), dtype object.

    ``ceil(test_fraction * n)`` samples are "test", ``ceil(validation_fraction * n)``
    (at most what is left) are "validation", the rest "train"; rounding up keeps
    a validation and a test structure of every size even at smoke scale.
    """
    for name, f in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name}={f} is not in [0, 1]")
    if validation_fraction + test_fraction > 1.0:
        raise ValueError(f"validation_fraction + test_fraction = {validation_fraction + test_fraction} > 1")
    n_test = min(n, int(np.ceil(test_fraction * n - 1e-9)))
    n_val = min(n - n_test, int(np.ceil(validation_fraction * n - 1e-9)))
    subset = np.full(n, "train", dtype=object)
    order = rng.permutation(n)
    subset[order[:n_test]] = "test"
    subset[order[n_test:n_test + n_val]] = "validation"
    return subset


def _check(params: Params) -> None:
    if params.reference not in ("gfn2-xtb", "gfn1-xtb"):
        raise ValueError(f"reference={params.reference!r}: si_clusters is labelled with 'gfn2-xtb' or 'gfn1-xtb'")
    if not 2 <= params.min_atoms <= params.max_atoms:
        raise ValueError(f"sizes {params.min_atoms}..{params.max_atoms} atoms: need 2 <= min_atoms <= max_atoms")
    if not 1 <= params.n_keep <= params.n_candidates:
        raise ValueError(f"n_keep={params.n_keep} must be in [1, n_candidates={params.n_candidates}]")
    if params.spare_fraction < 0:
        raise ValueError(f"spare_fraction={params.spare_fraction} is negative")


def generate(params: Params, seed: int) -> list[Atoms]:
    """Grow, farthest-point sample and label Si clusters; deterministic under ``seed``.

    For each size n in [min_atoms, max_atoms]: grow ``n_candidates`` clusters
    (:func:`grow_cluster`), pick by :func:`farthest_point_sampling` on
    :func:`distance_descriptor` in FPS order, label each with the reference
    (energy in eV under ``info["energy"]``, forces in eV/A under
    ``arrays["forces"]``) until ``n_keep`` are labelled, skipping any whose SCF
    fails, then split them into train / validation / test (:func:`assign_subsets`,
    per size, so every size appears in every subset).

    Returns
    -------
    list of ase.Atoms
        ``(max_atoms - min_atoms + 1) * n_keep`` clusters, ordered by size then
        FPS rank, centred on their centroid, no cell; ``info`` holds ``n_atoms``,
        ``subset``, ``fps_rank`` (order of the pick within its size),
        ``isolated_atom_energy`` (eV: the reference's energy of one Si atom with
        the same settings, spin-restricted, a consistent E0 for these labels)
        and the reference's provenance.
    """
    _check(params)
    settings = dict(electronic_temperature=params.electronic_temperature, accuracy=params.accuracy)
    # a consistent E0 for models of these labels (spin-restricted, same settings): not the paper's DFT E0
    e_atom = label(Atoms("Si"), params.reference, **settings).info["energy"]
    rules = dict(bond_min=params.bond_min, bond_max=params.bond_max, max_coordination=params.max_coordination)
    frames: list[Atoms] = []
    for n_atoms in range(params.min_atoms, params.max_atoms + 1):
        pool = grow_pool(n_atoms, params.n_candidates, _rng(seed, n_atoms, 0), **rules)
        n_pick = min(params.n_candidates, params.n_keep + int(np.ceil(params.spare_fraction * params.n_keep)))
        order = farthest_point_sampling(distance_descriptor(pool), n_pick)
        kept: list[Atoms] = []
        failed = 0
        for rank, idx in enumerate(order):
            pos = pool[idx] - pool[idx].mean(axis=0)
            try:
                atoms = label(Atoms(f"Si{n_atoms}", positions=pos), params.reference, **settings)
            except CalculationFailed as err:
                failed += 1
                log.warning("Si%d candidate %d (FPS rank %d) skipped: %s", n_atoms, idx, rank, err)
                continue
            atoms.info.update(n_atoms=n_atoms, fps_rank=rank, isolated_atom_energy=e_atom)
            kept.append(atoms)
            if len(kept) == params.n_keep:
                break
        if len(kept) < params.n_keep:
            raise RuntimeError(
                f"Si{n_atoms}: only {len(kept)} of n_keep={params.n_keep} clusters labelled ({failed} SCF failures "
                f"among {n_pick} FPS picks); raise spare_fraction={params.spare_fraction}"
            )
        if failed:
            log.info("Si%d: %d SCF failures replaced by the next FPS picks", n_atoms, failed)
        subsets = assign_subsets(len(kept), params.validation_fraction, params.test_fraction, _rng(seed, n_atoms, 1))
        for atoms, subset in zip(kept, subsets):
            atoms.info["subset"] = str(subset)
        frames.extend(kept)
    return frames


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Set ``n_atoms`` and, where the file has none, the train / validation / test subsets.

    Frames read from a file keep their ``subset`` if every frame has one (it must
    be "train", "validation" or "test"); if none has one, subsets are drawn per
    cluster size as in :func:`generate`. A file where only some frames have a
    subset is refused.
    """
    allowed = {"train", "validation", "test"}
    has = [("subset" in a.info) for a in frames]
    if any(has) and not all(has):
        missing = [i for i, h in enumerate(has) if not h]
        raise DatasetError(f"si_clusters: frames {missing[:5]} have no info['subset'] but others do")
    for i, atoms in enumerate(frames):
        if len(atoms) < 1 or set(atoms.get_chemical_symbols()) != {"Si"}:
            raise DatasetError(f"si_clusters, frame {i}: {atoms.get_chemical_formula()} is not a Si cluster")
        atoms.info["n_atoms"] = len(atoms)
        if all(has) and atoms.info["subset"] not in allowed:
            raise DatasetError(f"si_clusters, frame {i}: subset {atoms.info['subset']!r} "
                               f"is not one of {sorted(allowed)}")
    if not any(has):
        sizes = np.array([len(a) for a in frames])
        for n_atoms in np.unique(sizes):
            idx = np.flatnonzero(sizes == n_atoms)
            subsets = assign_subsets(len(idx), params.validation_fraction, params.test_fraction, _rng(seed, n_atoms, 1))
            for i, subset in zip(idx, subsets):
                frames[i].info["subset"] = str(subset)
    return frames
