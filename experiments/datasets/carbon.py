"""Amorphous carbon in the manner of GAP-17: bulk cells across densities and cleaved surfaces (Figs 4-5).

The paper (Section IV.1) trains a linear LE-ACE model on the dense bulk part of the
GAP-17 training set (Deringer & Csanyi, PRB 95, 094203 (2017); DFT, LDA, CASTEP)
and adds a few lower-density bulk structures chosen by PR so as to predict the
set's amorphous *surfaces*. Fig 5 builds its covariance from the whole set.

Sources
-------
``generate`` (offline, the default)
    Bulk amorphous carbon by melt-quench molecular dynamics: ``n_atoms`` carbon
    atoms placed at random in a cube of the target density (no pair closer than
    ``min_distance``), melted at ``melt_temperature`` and quenched linearly to
    ``quench_temperature`` with Tersoff forces (matscipy) and ASE's Langevin
    integrator; ``snapshots_per_run`` structures are taken evenly along each run.
    Each of the ``n_surfaces`` surface slabs comes from a melt-quench run of its
    own (same protocol, densities spread evenly over ``densities``), which
    supplies nothing else: no bulk structure (fit, validation or candidate)
    shares an MD trajectory with a target, as GAP-17's ``surf_amo`` structures
    are simulations separate from its ``bulk_amo`` ones. The quenched cell is cut
    at a random height, given a ``vacuum`` gap along z (periodic in x, y and z,
    the gap separating the images), annealed briefly with Tersoff and taken as
    the final snapshot; its ``density`` is that of the cell it was cut from and
    its ``run`` id follows those of the bulk runs.

    Labels: GFN1-xTB with periodic boundary conditions (tblite) by default. It is
    a stand-in for GAP-17's DFT (LDA), never DFT itself, and every structure says
    so (``reference_method`` and ``stand_in_for``). Measured here on one core:
    about 1 s per 64-atom periodic cell (1.5 s per 64-atom slab), ~5 s of Tersoff
    MD per 600-step melt-quench run of 64 atoms; the 220 structures of the
    ``quick`` scale (40 bulk runs, 20 surface runs) take ~10.5 min in all, of which
    the surface runs' MD ~1.7 min. That is affordable, and GFN1-xTB, an electronic
    structure method, describes the sp2/pi bonding of low-density and surface
    carbon, closer in kind to the paper's DFT than Tersoff's short-ranged
    (2.1 A) empirical bond order. ``reference: tersoff`` gives Tersoff labels
    instead (seconds; also recorded on every structure).
    The Fermi smearing defaults to 1160 K (0.1 eV, GAP-17's CASTEP smearing width).

``download`` (paper scale)
    The GAP-17 training archive; :func:`from_download` reads its extended XYZ
    files (``config_type`` ``bulk_amo`` -> subset "bulk", ``surf_amo`` -> "surface"),
    energies in eV and forces in eV/A as in the file, recorded as DFT (LDA,
    CASTEP). ``density`` is mass / cell volume, vacuum included for surfaces.

``file``
    Any extended XYZ with ``info["subset"]`` ("bulk" | "surface") or GAP-17's
    ``config_type``.

Splits (:func:`prepare`, every source; the paper's ``prepare_carbon_dataset``)
-------------------------------------------------------------------------------
The bulk and the surface structures are each shuffled with Python's
``random.Random(split_seed)`` (paper: ``random.seed(20240403)``, bulk first, then
surfaces, each in the order they come in), then

- ``split = "train"``: bulk with density > ``train_density`` (3.0 g/cm3);
- ``split = "candidate"``: the first ``max_candidates`` (1000) other bulk structures;
- ``split = "target"``: the first ``max_targets`` (50) surfaces;
- ``split = "unused"``: the rest, and any other config type;
- ``low_density = True``: bulk with density < ``low_density`` (2.0 g/cm3), the
  pool of Fig 4's "random low-density" baseline (drawn from all bulk rho <= 3.0
  structures, not only the candidates, as in the paper's code).

Frames are returned in the shuffled order (bulk, then surfaces, then others),
so that selecting a split keeps the order of the paper's files.
Densities use the paper's 1.66e-24 g per atomic mass unit (``amu_g``).
"""

from __future__ import annotations

import dataclasses
import io as _io
import random
import tarfile
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta as _thermalize
except ImportError:  # older ASE: the same Maxwell-Boltzmann draw under its former name
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as _thermalize

from . import references
from .io import DatasetError, Reference, annotate, take_calculator_results

__all__ = [
    "Params",
    "generate",
    "from_download",
    "prepare",
    "density_of",
    "cube_length",
    "random_positions",
    "melt_quench",
    "cleave",
    "GAP17_REFERENCE",
]

#: grams per atomic mass unit in the paper's density formula (CODATA: 1.66053907e-24)
AMU_G_PAPER = 1.66e-24

#: reference method written on downloaded GAP-17 structures
GAP17_REFERENCE = "DFT (LDA, CASTEP), GAP-17 training set"

#: what the generated labels stand in for
STAND_IN_FOR = "DFT (LDA, CASTEP) of the GAP-17 training set (Deringer & Csanyi, PRB 95, 094203 (2017))"

#: surface j draws from numpy default_rng([seed, SURFACE_SEED_OFFSET + j]); bulk run k from [seed, k]
SURFACE_SEED_OFFSET = 1_000_000

#: GAP-17 config_type -> subset
GAP17_SUBSETS = {"bulk_amo": "bulk", "surf_amo": "surface"}


@dataclasses.dataclass
class Params:
    # --- bulk melt-quench runs (source=generate) ---
    densities: list[float] = dataclasses.field(
        default_factory=lambda: [1.6, 1.8, 2.2, 2.6, 2.9, 3.1, 3.2, 3.3, 3.4, 3.5]
    )  # target densities of the runs (g/cm3); keep them off the split thresholds (2.0, 3.0)
    runs_per_density: int = 1  # independent melt-quench runs per target density
    n_atoms: int = 64  # carbon atoms per bulk cell (GAP-17's amorphous cells hold 64 or 216)
    min_distance: float = 1.2  # smallest pair distance of the random initial positions (A)
    timestep: float = 1.0  # MD time step (fs)
    friction: float = 0.02  # Langevin friction (1/fs)
    melt_temperature: float = 6000.0  # temperature of the melt (K)
    melt_steps: int = 200  # MD steps of the melt at melt_temperature
    quench_temperature: float = 300.0  # final temperature of the linear quench (K)
    quench_steps: int = 400  # MD steps of the linear quench, melt_temperature -> quench_temperature
    snapshots_per_run: int = 5  # structures kept per run, evenly spaced, the last at the end of the quench
    # --- surfaces ---
    n_surfaces: int = 10  # slabs, each from a melt-quench run of its own (densities spread evenly over `densities`)
    vacuum: float = 10.0  # vacuum gap added along z (A)
    surface_anneal_temperature: float = 1000.0  # Langevin temperature of the slab anneal (K)
    surface_anneal_steps: int = 150  # MD steps of the slab anneal (0: label the cut slab as is)
    # --- labels ---
    reference: str = "gfn1-xtb"  # gfn1-xtb (periodic tblite, default) | tersoff | gfn2-xtb
    electronic_temperature: float = 1160.0  # xTB Fermi smearing (K); 1160 K = 0.1 eV, GAP-17's smearing width
    # --- download ---
    keep_config_types: list[str] | None = dataclasses.field(
        default_factory=lambda: ["bulk_amo", "surf_amo"]
    )  # GAP-17 config_type values kept from the archive; null keeps all (Fig 5 uses the whole set)
    archive_members: list[str] | None = None  # extxyz names read from a tar archive, in order; null: every .xyz
    # --- splits (prepare) ---
    split_seed: int = 20240403  # Python random.seed of the paper's shuffle
    train_density: float = 3.0  # train: bulk with density above this (g/cm3)
    low_density: float = 2.0  # low-density pool: bulk with density below this (g/cm3)
    max_train: int | None = None  # cap on the training set (null: every dense bulk structure, 800 in the paper)
    max_candidates: int | None = 1000  # candidates: the first this many shuffled bulk rho <= train_density
    max_targets: int | None = 50  # targets: the first this many shuffled surfaces
    amu_g: float = AMU_G_PAPER  # grams per atomic mass unit in density = mass / volume (g)


# ----------------------------------------------------------------------------- geometry


def density_of(atoms: Atoms, amu_g: float = AMU_G_PAPER) -> float:
    """Mass density of a periodic cell in g/cm3.

    .. math:: \\rho = m_u \\sum_i m_i / V, \\quad V \\text{ in } 10^{-24}\\,\\mathrm{cm}^3 = \\mathrm{A}^3

    Parameters
    ----------
    atoms
        Structure with a cell of non-zero volume (A^3).
    amu_g
        Grams per atomic mass unit (the paper's code uses 1.66e-24).
    """
    volume = abs(atoms.cell.volume)
    if volume < 1e-8:
        raise DatasetError(f"{atoms.get_chemical_formula()}: no cell (volume {volume} A^3), density undefined")
    return float(atoms.get_masses().sum() * amu_g / (volume * 1e-24))


def cube_length(n_atoms: int, density: float, amu_g: float = AMU_G_PAPER, mass: float = 12.011) -> float:
    """Edge (A) of the cube that holds ``n_atoms`` atoms of ``mass`` (amu) at ``density`` (g/cm3)."""
    if n_atoms < 1:
        raise ValueError(f"n_atoms = {n_atoms} must be at least 1")
    if not density > 0:
        raise ValueError(f"density = {density} g/cm3 must be positive")
    return float((n_atoms * mass * amu_g / (density * 1e-24)) ** (1.0 / 3.0))


def random_positions(
    n_atoms: int, length: float, min_distance: float, rng: np.random.Generator, max_attempts: int = 1000
) -> np.ndarray:
    """Random sequential placement of points in a periodic cube, no pair closer than ``min_distance``.

    Parameters
    ----------
    n_atoms
        Number of points.
    length
        Edge of the periodic cube (A).
    min_distance
        Smallest allowed minimum-image distance (A).
    rng
        Source of randomness.
    max_attempts
        Trials per point before giving up.

    Returns
    -------
    ndarray of shape (n_atoms, 3), in A, inside [0, length).
    """
    positions = np.empty((n_atoms, 3))
    placed = 0
    for _ in range(n_atoms):
        for _attempt in range(max_attempts):
            trial = rng.uniform(0.0, length, size=3)
            d = positions[:placed] - trial
            d -= length * np.round(d / length)
            if placed == 0 or np.einsum("ij,ij->i", d, d).min() >= min_distance**2:
                positions[placed] = trial
                placed += 1
                break
        else:
            raise DatasetError(
                f"could not place atom {placed + 1} of {n_atoms} in a {length:.3f} A cube with min_distance "
                f"{min_distance} A after {max_attempts} attempts: lower min_distance or the density"
            )
    return positions


# ----------------------------------------------------------------------------- dynamics


def _langevin(atoms: Atoms, calc, temperature: float, timestep: float, friction: float, rng) -> Langevin:
    atoms.calc = calc
    # fixcm=False: ASE's fixcm=True is deprecated (not exact NVT); a slow centre-of-mass drift is harmless here
    return Langevin(
        atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs, rng=rng, fixcm=False
    )


def melt_quench(
    atoms: Atoms, calc, params: Params, rng: np.random.Generator
) -> list[tuple[int, float, Atoms]]:
    """Melt at ``params.melt_temperature``, quench linearly to ``params.quench_temperature``.

    The temperature of the Langevin thermostat is updated every 10 steps of the
    quench. ``params.snapshots_per_run`` snapshots are taken at steps
    ``k * total / n`` (k = 1 ... n), the last at the end of the quench.

    Returns
    -------
    list of (step, thermostat temperature in K, wrapped copy of the structure).
    """
    total = params.melt_steps + params.quench_steps
    n = params.snapshots_per_run
    if n < 1 or total < n:
        raise ValueError(f"snapshots_per_run = {n} needs 1 <= n <= melt_steps + quench_steps = {total}")
    snap_steps = sorted({int(round(k * total / n)) for k in range(1, n + 1)})
    events = sorted(set(snap_steps) | set(range(params.melt_steps, total, 10)) | {params.melt_steps})

    def temperature(step: int) -> float:
        if step < params.melt_steps or params.quench_steps == 0:
            return params.melt_temperature
        f = (step - params.melt_steps) / params.quench_steps
        return params.melt_temperature + f * (params.quench_temperature - params.melt_temperature)

    _thermalize(atoms, temperature_K=params.melt_temperature, rng=rng)
    Stationary(atoms)
    dyn = _langevin(atoms, calc, params.melt_temperature, params.timestep, params.friction, rng)
    snapshots = []
    step = 0
    for event in events:
        if event > step:
            dyn.run(event - step)
            step = event
        if step in snap_steps:
            snap = atoms.copy()
            snap.calc = None
            snap.arrays.pop("momenta", None)  # velocities are not part of the dataset
            snap.wrap()
            snapshots.append((step, temperature(step), snap))
        dyn.set_temperature(temperature_K=temperature(step))
    atoms.calc = None
    return snapshots


def cleave(bulk: Atoms, vacuum: float, cut: float) -> Atoms:
    """Cut a periodic cell with an orthogonal c axis at height ``cut`` (A) and open a ``vacuum`` gap along z.

    The slab keeps its periodicity in x and y; the cell stays periodic along z
    with ``vacuum`` (A) of empty space between the slab and its image; the slab
    is centred in z.
    """
    cell = np.asarray(bulk.cell)
    if not np.allclose(cell[2, :2], 0.0) or not np.allclose(cell[:2, 2], 0.0):
        raise ValueError(f"cleave needs a cell with c along z and a, b in the xy plane, got {cell.round(3).tolist()}")
    if not vacuum > 0:
        raise ValueError(f"vacuum = {vacuum} A must be positive")
    height = cell[2, 2]
    slab = bulk.copy()
    slab.calc = None
    pos = slab.get_positions()
    pos[:, 2] = np.mod(pos[:, 2] - cut, height) + 0.5 * vacuum
    slab.set_positions(pos)
    cell[2, 2] = height + vacuum
    slab.set_cell(cell, scale_atoms=False)
    slab.pbc = True
    return slab


def z_gap(atoms: Atoms) -> float:
    """Widest empty interval (A) along z, periodic in the cell's c length (an orthogonal c axis)."""
    c = float(atoms.cell[2, 2])
    z = np.sort(np.mod(atoms.positions[:, 2], c))
    gaps = np.diff(np.concatenate([z, [z[0] + c]]))
    return float(gaps.max())


# ----------------------------------------------------------------------------- generate


def _check_params(params: Params) -> None:
    if not params.densities:
        raise ValueError("densities is empty: give at least one target density (g/cm3)")
    for rho in params.densities:
        if not 0.5 <= rho <= 4.0:
            raise ValueError(f"density {rho} g/cm3 is outside the range 0.5-4.0 g/cm3 of carbon")
        for name in ("train_density", "low_density"):
            if abs(rho - getattr(params, name)) < 1e-6:
                raise ValueError(
                    f"density {rho} g/cm3 sits on the split threshold {name} = {getattr(params, name)}: "
                    "rounding would decide its split; move it off the threshold"
                )
    for name in ("runs_per_density", "n_atoms", "snapshots_per_run"):
        if getattr(params, name) < 1:
            raise ValueError(f"{name} = {getattr(params, name)} must be at least 1")
    n_runs = len(params.densities) * params.runs_per_density
    if n_runs > SURFACE_SEED_OFFSET:
        raise ValueError(f"{n_runs} bulk runs: more than {SURFACE_SEED_OFFSET}, the seeds would meet the surfaces'")
    for name in ("melt_steps", "quench_steps", "n_surfaces", "surface_anneal_steps"):
        if getattr(params, name) < 0:
            raise ValueError(f"{name} = {getattr(params, name)} must not be negative")
    if params.reference not in references.REFERENCES:
        raise ValueError(f"reference {params.reference!r} is not one of {sorted(references.REFERENCES)}")


def _labeller(params: Params):
    """(calculator, settings recorded with the labels) for ``params.reference``."""
    settings = {}
    if params.reference in ("gfn1-xtb", "gfn2-xtb"):
        settings = {"electronic_temperature": params.electronic_temperature}
    return references.calculator(params.reference, **settings), settings


def _label(atoms: Atoms, params: Params, calc, settings: dict, where: str) -> Atoms:
    try:
        labelled = references.label(atoms, params.reference, calc=calc, **settings)
    except Exception as err:  # tblite raises a bare RuntimeError/Exception on SCF failure
        raise DatasetError(
            f"{where}: {params.reference} failed on {len(atoms)} atoms ({type(err).__name__}: {err}); "
            "try a higher electronic_temperature"
        ) from None
    labelled.info["stand_in_for"] = STAND_IN_FOR
    return labelled


def _melt_quench_run(
    rho: float, params: Params, tersoff, rng: np.random.Generator, keep_last_only: bool = False
) -> list[tuple[int, float, Atoms]]:
    """One melt-quench run at density ``rho`` from random positions: :func:`melt_quench`'s snapshots.

    ``keep_last_only``: the run of a surface slab, of which only the quenched cell is used (one snapshot,
    at the end of the quench).
    """
    length = cube_length(params.n_atoms, rho, params.amu_g)
    atoms = Atoms(
        numbers=np.full(params.n_atoms, 6),
        positions=random_positions(params.n_atoms, length, params.min_distance, rng),
        cell=np.eye(3) * length,
        pbc=True,
    )
    if keep_last_only:
        params = dataclasses.replace(params, snapshots_per_run=1)
    return melt_quench(atoms, tersoff, params, rng)


def generate(params: Params, seed: int) -> list[Atoms]:
    """Bulk amorphous carbon by melt-quench and cleaved surfaces, labelled, split as in the paper.

    Deterministic under ``seed``: bulk run ``k`` draws from ``numpy.random.default_rng([seed, k])``;
    surface ``j`` (its own melt-quench run, its cut and its anneal) from
    ``default_rng([seed, SURFACE_SEED_OFFSET + j])``. The run ids (``info["run"]``) of the surfaces follow
    those of the bulk runs: no surface shares a run with a bulk structure.

    Returns
    -------
    list of periodic :class:`ase.Atoms` with ``info`` keys ``subset`` ("bulk" | "surface"),
    ``density`` (g/cm3), ``run``, ``md_step``, ``md_temperature`` (K), ``energy`` (eV),
    the reference record, ``split`` and ``low_density`` (see :func:`prepare`), and
    ``arrays["forces"]`` (eV/A).
    """
    _check_params(params)
    tersoff = references.tersoff_calculator()
    calc, settings = _labeller(params)
    frames: list[Atoms] = []
    run = 0
    for rho in params.densities:
        for _ in range(params.runs_per_density):
            for step, temp, snap in _melt_quench_run(rho, params, tersoff, np.random.default_rng([seed, run])):
                snap.info.update(subset="bulk", density=float(rho), run=run, md_step=step, md_temperature=temp)
                frames.append(_label(snap, params, calc, settings, f"run {run} (rho {rho} g/cm3), step {step}"))
            run += 1

    n_bulk_runs = run
    for j in range(params.n_surfaces):
        # a run of its own: the slab shares no MD trajectory with any bulk structure (GAP-17's surf_amo are
        # separate simulations too); its last snapshot is cut, nothing else of the run is kept
        rng = np.random.default_rng([seed, SURFACE_SEED_OFFSET + j])
        rho = float(params.densities[(j * len(params.densities)) // params.n_surfaces])
        source = _melt_quench_run(rho, params, tersoff, rng, keep_last_only=True)[-1][2]
        cut = float(rng.uniform(0.0, source.cell[2, 2]))
        slab = cleave(source, params.vacuum, cut)
        if params.surface_anneal_steps > 0:
            _thermalize(slab, temperature_K=params.surface_anneal_temperature, rng=rng)
            Stationary(slab)
            dyn = _langevin(slab, tersoff, params.surface_anneal_temperature, params.timestep, params.friction, rng)
            dyn.run(params.surface_anneal_steps)
            slab.calc = None
        slab.wrap()  # x and y into the cell; the slab stays whole in z (it sits mid-cell)
        slab.arrays.pop("momenta", None)
        slab.info = dict(
            subset="surface",
            slab=j,
            density=rho,
            run=n_bulk_runs + j,
            md_step=params.surface_anneal_steps,
            md_temperature=params.surface_anneal_temperature,
            cut_height=cut,
            vacuum=params.vacuum,
        )
        frames.append(_label(slab, params, calc, settings, f"surface {j} (run {n_bulk_runs + j}, rho {rho} g/cm3)"))
    return prepare(frames, params, seed)


# ----------------------------------------------------------------------------- download


def _read_extxyz_text(text: str, where: str) -> list[Atoms]:
    try:
        frames = ase.io.read(_io.StringIO(text), index=":", format="extxyz")
    except Exception as err:
        raise DatasetError(f"{where}: not a readable extended XYZ file ({type(err).__name__}: {err})") from None
    return [frames] if isinstance(frames, Atoms) else list(frames)


def _read_archive(path: Path, members: list[str] | None) -> list[Atoms]:
    """Frames of the extended XYZ files in a tar archive (``members`` by base name, in that order)."""
    with tarfile.open(path) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
        if members is None:
            chosen = [m for m in files if m.name.endswith((".xyz", ".extxyz"))]
            if not chosen:
                raise DatasetError(f"{path}: no .xyz member in the archive (members: {[m.name for m in files][:20]})")
        else:
            by_name = {Path(m.name).name: m for m in files}
            missing = [name for name in members if name not in by_name]
            if missing:
                raise DatasetError(
                    f"{path}: archive_members {missing} not in the archive (has {sorted(by_name)[:20]})"
                )
            chosen = [by_name[name] for name in members]
        frames = []
        for member in chosen:
            text = tar.extractfile(member).read().decode()
            frames.extend(_read_extxyz_text(text, f"{path}:{member.name}"))
    return frames


def _take_labels(atoms: Atoms, where: str) -> Atoms:
    """Energy (eV) into info["energy"] and forces (eV/A) into arrays["forces"], whatever ASE did on reading."""
    take_calculator_results(atoms)
    if "force" in atoms.arrays:
        atoms.arrays.setdefault("forces", np.asarray(atoms.arrays["force"], dtype=float))
        del atoms.arrays["force"]
    atoms.arrays.pop("frac_pos", None)  # redundant with positions
    if "energy" not in atoms.info:
        raise DatasetError(f"{where}: no energy (info keys: {sorted(atoms.info)})")
    return atoms


def from_download(path, params: Params, seed: int) -> list[Atoms]:
    """Read the GAP-17 training set (a tar archive of extended XYZ files, or one such file).

    Keeps the ``config_type`` values in ``params.keep_config_types`` (all when null),
    ``bulk_amo`` as subset "bulk" and ``surf_amo`` as "surface" (others keep their
    config type as subset). Energies (eV) and forces (eV/A) are taken as in the
    file and recorded as DFT (LDA, CASTEP). ``density`` is mass / cell volume
    (g/cm3, vacuum included for surfaces). Splits are left to :func:`prepare`.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if tarfile.is_tarfile(path):
        frames = _read_archive(path, params.archive_members)
    else:
        frames = _read_extxyz_text(path.read_text(), str(path))
    keep = None if params.keep_config_types is None else set(params.keep_config_types)
    reference = Reference(
        GAP17_REFERENCE,
        "CASTEP (Deringer & Csanyi, PRB 95, 094203 (2017))",
        {"archive": path.name, "xc_functional": "LDA"},
    )
    out = []
    for i, atoms in enumerate(frames):
        where = f"{path}, frame {i}"
        ct = atoms.info.get("config_type")
        if ct is None:
            raise DatasetError(f"{where}: no config_type (info keys: {sorted(atoms.info)})")
        if keep is not None and ct not in keep:
            continue
        _take_labels(atoms, where)
        if "forces" not in atoms.arrays or np.shape(atoms.arrays["forces"]) != (len(atoms), 3):
            raise DatasetError(f"{where}: no forces of shape ({len(atoms)}, 3) under 'force' or 'forces'")
        atoms.info["energy"] = float(atoms.info["energy"])
        annotate(
            atoms,
            reference,
            subset=GAP17_SUBSETS.get(ct, ct),
            density=density_of(atoms, params.amu_g),
        )
        out.append(atoms)
    if not out:
        found = sorted({a.info.get("config_type") for a in frames})
        raise DatasetError(f"{path}: no structure with config_type in {sorted(keep or [])} (found {found})")
    return out


# ----------------------------------------------------------------------------- splits


def _subset(atoms: Atoms, where: str) -> str:
    if "subset" in atoms.info:
        return str(atoms.info["subset"])
    ct = atoms.info.get("config_type")
    if ct is None:
        raise DatasetError(f"{where}: neither info['subset'] (bulk | surface) nor a GAP-17 config_type")
    return GAP17_SUBSETS.get(str(ct), str(ct))


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Assign the paper's Fig 4 splits (see the module docstring); return the frames in shuffled order.

    ``seed`` (the master seed) is not used: the split follows the paper's fixed
    ``params.split_seed``. Bulk densities are recomputed as mass / volume; a
    surface keeps its ``info["density"]`` if it has one.
    """
    bulk, surface, other = [], [], []
    for i, atoms in enumerate(frames):
        where = f"carbon frame {i}"
        subset = _subset(atoms, where)
        atoms.info["subset"] = subset
        if subset == "bulk":
            atoms.info["density"] = density_of(atoms, params.amu_g)
            bulk.append(atoms)
        elif subset == "surface":
            if "density" not in atoms.info:
                atoms.info["density"] = density_of(atoms, params.amu_g)
            surface.append(atoms)
        else:
            other.append(atoms)
    shuffler = random.Random(params.split_seed)
    shuffler.shuffle(bulk)
    shuffler.shuffle(surface)

    n_train = n_candidates = 0
    for atoms in bulk:
        rho = atoms.info["density"]
        atoms.info["low_density"] = bool(rho < params.low_density)
        if rho > params.train_density:
            take = params.max_train is None or n_train < params.max_train
            atoms.info["split"] = "train" if take else "unused"
            n_train += take
        else:
            take = params.max_candidates is None or n_candidates < params.max_candidates
            atoms.info["split"] = "candidate" if take else "unused"
            n_candidates += take
    for k, atoms in enumerate(surface):
        atoms.info["low_density"] = False
        atoms.info["split"] = "target" if params.max_targets is None or k < params.max_targets else "unused"
    for atoms in other:
        atoms.info["low_density"] = False
        atoms.info["split"] = "unused"
    return bulk + surface + other
