"""Coarse-grained liquid water, one bead per molecule: Figs 8-9 (Section VI).

Reference simulation
--------------------
All-atom liquid water, ``n_molecules`` (paper: 128) rigid molecules in a cubic
periodic box at a fixed density, NVT at 300 K, run with OpenMM:

- water model: **SPC/E** by default (OpenMM's bundled ``spce.xml``), rigid.
  The paper does not name its classical model. SPC/E is a standard rigid
  three-site model whose liquid structure (O-O g(r)) and density at 300 K are
  closer to experiment than TIP3P's, and Figs 8-9 compare exactly such
  structural properties (g(r), Steinhardt q4) of the coarse-grained models
  against this reference; both cost the same. ``tip3p`` and ``tip3pfb`` (also
  rigid three-site, bundled with OpenMM) can be chosen instead. Four- and
  five-site models are refused: their massless virtual sites would have to be
  folded into the beads.
- box: cubic, side from ``density`` (g/cm3) and the molecules' mass; 128
  molecules at 0.997 g/cm3 give L = 15.66 A.
- electrostatics: PME, real-space cutoff ``cutoff`` (A) below half the box,
  Ewald error tolerance ``ewald_tolerance``; Lennard-Jones truncated at the same
  cutoff with OpenMM's long-range dispersion correction (energy only: NVT).
- dynamics: ``LangevinMiddleIntegrator`` at ``temperature`` (K), friction
  ``friction`` (1/ps), time step ``timestep`` (fs; 2 fs, the standard for rigid
  water: bonds and angle are constrained). The 0.5 fs step of SETTINGS.md
  belongs to the coarse-grained MACE model's MD, not to this reference.
- start: oxygens on randomly chosen sites of a simple-cubic lattice, random
  orientations, energy minimisation, velocities from Maxwell-Boltzmann, then
  ``equilibration`` ps of dynamics before the first frame; then a frame every
  ``stride`` steps.
- determinism: the lattice sites and orientations, the initial velocities and
  the integrator's random numbers all derive from the master seed. OpenMM
  8.6's CPU platform with ``DeterministicForces`` and **one** thread gives
  bit-identical trajectories for one seed on one machine (tested); with 2
  threads two runs differ (measured), so ``threads > 1`` trades
  reproducibility for speed. The Reference platform (single-threaded, double
  precision) is about 10 times slower; its determinism is not tested here.
  CUDA and OpenCL (for the paper scale) run with ``DeterministicForces`` but
  are not checked here either; runs that differ in the
  last bit diverge chaotically while sampling the same ensemble.
- cost: about 850 steps/s for 128 molecules on one CPU thread (OpenMM 8.6.1),
  so the quick scale (72,500 steps) takes about 1.5 minutes and the paper scale
  (2.55 million steps) about 50 minutes.

Coarse-graining
---------------
Each frame is mapped to one bead per molecule (:func:`coarse_grain`): the bead
sits at the molecule's centre of mass (molecule made whole by the minimum-image
convention, then wrapped into the cell) and carries the sum of its atoms'
forces, converted from OpenMM's kJ/mol/nm to eV/A (:data:`KJ_MOL_NM_TO_EV_A`).
The forces are the force field's forces: constraint forces are internal to a
molecule and cancel in the sum. The bead mass (``arrays["masses"]``) is the
molecule's mass (18.015 amu). The beads are written with chemical symbol
``bead_symbol`` (default "O", because a MACE model needs an atomic number > 0 and
the centre of mass of a water molecule lies 0.07 A from its oxygen):
``info["bead"]`` says that each is a coarse-grained water molecule, **not** that
element. There is no energy (force matching: the model is trained on forces
only), so frames carry no ``info["energy"]``.

Splits
------
As the paper (``random.seed(20240406)``, then ``random.shuffle`` of the 50,000
frames; validation = shuffled positions [40000:41000], test = [41000:42000],
training subsets of size n: positions [k n, (k + 1) n) for k = 0 ... 3), the
frames are shuffled with Python's ``random.Random(split_seed).shuffle``, which
reproduces the paper's permutation of its own trajectory. Generalised by
fractions of ``n_frames``: validation = positions
``[round(validation_start N), + round(validation_fraction N))``, test = the next
``round(test_fraction N)``; every other frame is in subset "train". Each frame
records ``info["subset"]`` (train | validation | test) and
``info["shuffled_index"]`` (its position in the shuffle); :func:`train_subset`
returns training subset k of size n: the train frames of ranks [k n, (k + 1) n)
in shuffled order, the paper's subsets on the paper's data. Frames are written
in trajectory order (``info["frame_index"]``, ``info["time_ps"]``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from importlib.metadata import version

import numpy as np
from ase import Atoms

from .io import DatasetError, Reference, annotate
from .water_geometry import random_rotation, water_positions

__all__ = [
    "Params",
    "KJ_MOL_NM_TO_EV_A",
    "WATER_MODELS",
    "coarse_grain",
    "box_length",
    "assign_subsets",
    "train_subset",
    "simulate",
    "generate",
    "prepare",
]

log = logging.getLogger(__name__)

_STREAM = 7403

#: 1 kJ/mol/nm in eV/A: 1e3 J / (N_A e) per 10 A, with the exact SI (2019) values of N_A and e
KJ_MOL_NM_TO_EV_A = 1e3 / (6.02214076e23 * 1.602176634e-19) / 10.0

#: rigid three-site water models bundled with OpenMM: name -> (force-field file, name on figures)
WATER_MODELS = {
    "spce": ("spce.xml", "SPC/E"),
    "tip3p": ("tip3p.xml", "TIP3P"),
    "tip3pfb": ("tip3pfb.xml", "TIP3P-FB"),
}

_PLATFORMS = ("CPU", "Reference", "CUDA", "OpenCL")

#: Avogadro constant (1/mol, exact in SI 2019), for the box from the density
_AVOGADRO = 6.02214076e23


@dataclasses.dataclass
class Params:
    n_molecules: int = 128  # water molecules (= beads) per frame (paper: 128)
    density: float = 0.997  # g/cm3, fixes the cubic box (128 molecules: L = 15.66 A)
    water_model: str = "spce"  # rigid 3-site model bundled with OpenMM: spce | tip3p | tip3pfb
    temperature: float = 300.0  # K, Langevin thermostat (paper: NVT at 300 K)
    friction: float = 1.0  # 1/ps, Langevin friction of the all-atom reference
    timestep: float = 2.0  # fs, all-atom time step (rigid water)
    cutoff: float = 7.0  # A, real-space PME and Lennard-Jones cutoff (below half the box)
    ewald_tolerance: float = 5e-4  # PME relative error tolerance (OpenMM's ewaldErrorTolerance)
    equilibration: float = 100.0  # ps of dynamics after minimisation before the first frame
    stride: int = 50  # MD steps between saved frames (50 x 2 fs = 0.1 ps)
    n_frames: int = 50000  # frames saved (paper: 50,000)
    split_seed: int = 20240406  # seed of the frame shuffle (paper: random.seed(20240406))
    validation_start: float = 0.8  # start of validation in the shuffle, fraction of n_frames (paper: 40000/50000)
    validation_fraction: float = 0.02  # fraction of frames in validation (paper: 1000/50000)
    test_fraction: float = 0.02  # fraction of frames in test, right after validation (paper: 1000/50000)
    bead_symbol: str = "O"  # chemical symbol written for each bead (a label for MACE, not that element)
    platform: str = "CPU"  # OpenMM platform: CPU | Reference | CUDA | OpenCL
    threads: int = 1  # CPU platform threads (only 1 gives bit-identical trajectories under a seed)


# --------------------------------------------------------------------------- coarse-graining


def coarse_grain(atoms: Atoms, atoms_per_molecule: int = 3, bead_symbol: str = "O") -> Atoms:
    """One bead per molecule at its centre of mass, carrying the sum of its atoms' forces.

    Molecules are consecutive blocks of ``atoms_per_molecule`` atoms. In a periodic
    cell a molecule split across the boundary is first made whole: each atom is
    replaced by its minimum image relative to the molecule's first atom. The bead
    is then wrapped into the cell.

    .. math::

        R_I = \\frac{\\sum_{i \\in I} m_i r_i}{\\sum_{i \\in I} m_i}, \\qquad F_I = \\sum_{i \\in I} f_i

    Parameters
    ----------
    atoms : ase.Atoms
        All-atom frame with ``arrays["forces"]`` (any force unit; kept) and the
        masses used for the centre of mass (amu; ``atoms.get_masses()``).
    atoms_per_molecule : int
        Atoms per molecule (3 for water).
    bead_symbol : str
        Chemical symbol written for the beads.

    Returns
    -------
    ase.Atoms
        ``len(atoms) / atoms_per_molecule`` beads with the same cell and pbc,
        ``arrays["forces"]`` of shape (n_beads, 3), ``arrays["masses"]``
        (molecular masses, amu) and a copy of ``atoms.info``.
    """
    n = len(atoms)
    if atoms_per_molecule < 1 or n % atoms_per_molecule:
        raise ValueError(f"{n} atoms do not split into molecules of {atoms_per_molecule} atoms")
    if "forces" not in atoms.arrays:
        raise ValueError(f"coarse-graining needs arrays['forces']; arrays are {sorted(atoms.arrays)}")
    n_mol = n // atoms_per_molecule
    positions = atoms.get_positions().reshape(n_mol, atoms_per_molecule, 3)
    forces = np.asarray(atoms.arrays["forces"], dtype=float).reshape(n_mol, atoms_per_molecule, 3)
    masses = atoms.get_masses().reshape(n_mol, atoms_per_molecule)
    periodic = bool(atoms.pbc.any())
    if periodic and abs(atoms.cell.volume) < 1e-12:
        raise ValueError(f"periodic frame (pbc={atoms.pbc.tolist()}) without a cell")

    offsets = positions - positions[:, :1, :]  # (n_mol, k, 3) relative to each molecule's first atom
    if periodic:
        cell = np.asarray(atoms.cell)
        frac = offsets @ np.linalg.inv(cell)
        frac[..., atoms.pbc] -= np.round(frac[..., atoms.pbc])
        offsets = frac @ cell
    total_mass = masses.sum(axis=1)
    centres = positions[:, 0, :] + np.einsum("mk,mkx->mx", masses, offsets) / total_mass[:, None]

    beads = Atoms(
        [bead_symbol] * n_mol,
        positions=centres,
        cell=atoms.cell.copy(),
        pbc=atoms.pbc.copy(),
    )
    if periodic:
        beads.wrap()
    beads.set_masses(total_mass)
    beads.arrays["forces"] = forces.sum(axis=1)
    beads.info.update(atoms.info)
    return beads


# --------------------------------------------------------------------------- splits


def assign_subsets(
    n_frames: int, split_seed: int, validation_start: float, validation_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Subset of each frame and its position in the seeded shuffle (see the module's "Splits").

    Returns
    -------
    subset : numpy.ndarray of str, shape (n_frames,)
        "train", "validation" or "test", indexed by frame (trajectory order).
    shuffled_index : numpy.ndarray of int, shape (n_frames,)
        Position of each frame in ``random.Random(split_seed).shuffle``.
    """
    start = int(round(validation_start * n_frames))
    n_val = int(round(validation_fraction * n_frames))
    n_test = int(round(test_fraction * n_frames))
    if min(validation_fraction, test_fraction) < 0 or not 0 <= validation_start <= 1:
        raise ValueError(
            f"validation_start = {validation_start}, validation_fraction = {validation_fraction} and "
            f"test_fraction = {test_fraction} must be fractions in [0, 1]"
        )
    if start + n_val + n_test > n_frames:
        raise ValueError(
            f"validation [{start}, {start + n_val}) and test [{start + n_val}, {start + n_val + n_test}) "
            f"run past the {n_frames} frames"
        )
    if n_frames - n_val - n_test < 1:
        raise ValueError(f"no training frames left among {n_frames} (validation {n_val}, test {n_test})")
    order = list(range(n_frames))
    random.Random(split_seed).shuffle(order)  # order[p] = frame at shuffled position p
    shuffled_index = np.empty(n_frames, dtype=int)
    shuffled_index[order] = np.arange(n_frames)
    subset = np.full(n_frames, "train", dtype=object)
    subset[order[start:start + n_val]] = "validation"
    subset[order[start + n_val:start + n_val + n_test]] = "test"
    return subset, shuffled_index


def train_subset(frames: list[Atoms], size: int, index: int) -> list[Atoms]:
    """Training subset ``index`` (0, 1, ...) of ``size`` frames: train ranks [index size, (index + 1) size).

    Train frames are ranked by ``info["shuffled_index"]``; on the paper's 50,000
    frames this gives its ``CG_water_train_<size>_<index>`` sets. Subsets of one
    size are disjoint; subsets 0 of every size are nested. The workflow's run key
    ``n<size>-b<index>`` selects the same frames (experiments/runs.py).
    """
    train = sorted((a for a in frames if a.info.get("subset") == "train"), key=lambda a: a.info["shuffled_index"])
    lo, hi = index * size, (index + 1) * size
    if size < 1 or index < 0 or hi > len(train):
        raise ValueError(f"training subset {index} of {size} frames needs ranks [{lo}, {hi}); there are {len(train)}")
    return train[lo:hi]


# --------------------------------------------------------------------------- all-atom MD


def box_length(n_molecules: int, density: float, molar_mass: float = 18.01528) -> float:
    """Side (A) of the cube holding ``n_molecules`` of molar mass ``molar_mass`` (g/mol) at ``density`` (g/cm3)."""
    if n_molecules < 1 or density <= 0:
        raise ValueError(f"n_molecules = {n_molecules} and density = {density} g/cm3 must be positive")
    volume_cm3 = n_molecules * molar_mass / _AVOGADRO / density
    return float((volume_cm3 * 1e24) ** (1.0 / 3.0))


def _check(params: Params) -> None:
    if params.water_model not in WATER_MODELS:
        raise ValueError(f"water_model {params.water_model!r} is not one of {sorted(WATER_MODELS)} (rigid 3-site)")
    if params.platform not in _PLATFORMS:
        raise ValueError(f"platform {params.platform!r} is not one of {_PLATFORMS}")
    length = box_length(params.n_molecules, params.density)
    if not 0 < params.cutoff < length / 2:
        raise ValueError(f"cutoff = {params.cutoff} A must be positive and below half the box ({length / 2:.3f} A)")
    for name in ("temperature", "friction", "timestep"):
        if getattr(params, name) <= 0:
            raise ValueError(f"{name} = {getattr(params, name)} must be positive")
    if params.stride < 1 or params.n_frames < 1 or params.equilibration < 0 or params.threads < 1:
        raise ValueError(
            f"stride = {params.stride}, n_frames = {params.n_frames}, threads = {params.threads} must be >= 1 "
            f"and equilibration = {params.equilibration} ps >= 0"
        )


def _initial_positions(n_molecules: int, length: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (A) of O, H, H per molecule: oxygens on random sites of a cubic lattice, random orientations."""
    per_side = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    sites = (grid[rng.choice(len(grid), size=n_molecules, replace=False)] + 0.5) * (length / per_side)
    molecule = water_positions(1.0, 1.0, 109.47)  # SPC/E geometry; minimisation applies the chosen model's constraints
    return np.concatenate([site + molecule @ random_rotation(rng).T for site in sites])


def _openmm_seed(rng: np.random.Generator) -> int:
    """A non-zero 31-bit seed (OpenMM treats 0 as "pick one at random")."""
    return int(rng.integers(1, 2**31 - 1))


def simulate(params: Params, seed: int):
    """Run the all-atom NVT simulation and yield all-atom frames (eV/A forces) one at a time.

    Yields
    ------
    ase.Atoms
        ``3 n_molecules`` atoms O, H, H, ... in the periodic cubic box, OpenMM's
        masses (amu), ``arrays["forces"]`` in eV/A, ``info["frame_index"]`` and
        ``info["time_ps"]`` (time since the end of equilibration).
    """
    import openmm
    from openmm import app, unit

    _check(params)
    rng = np.random.default_rng([int(seed), _STREAM])
    length = box_length(params.n_molecules, params.density)

    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(params.n_molecules):
        residue = topology.addResidue("HOH", chain)
        oxygen = topology.addAtom("O", app.element.oxygen, residue)
        h1 = topology.addAtom("H1", app.element.hydrogen, residue)
        h2 = topology.addAtom("H2", app.element.hydrogen, residue)
        topology.addBond(oxygen, h1)
        topology.addBond(oxygen, h2)
    topology.setPeriodicBoxVectors(np.eye(3) * length / 10.0 * unit.nanometer)

    forcefield = app.ForceField(WATER_MODELS[params.water_model][0])
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=params.cutoff / 10.0 * unit.nanometer,
        constraints=app.HBonds,
        rigidWater=True,
        ewaldErrorTolerance=params.ewald_tolerance,
    )
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])

    integrator = openmm.LangevinMiddleIntegrator(
        params.temperature * unit.kelvin, params.friction / unit.picosecond, params.timestep * unit.femtosecond
    )
    integrator.setRandomNumberSeed(_openmm_seed(rng))
    platform = openmm.Platform.getPlatformByName(params.platform)
    properties = {}
    if params.platform == "CPU":
        properties = {"Threads": str(params.threads), "DeterministicForces": "true"}
    elif params.platform in ("CUDA", "OpenCL"):
        properties = {"DeterministicForces": "true"}
    context = openmm.Context(system, integrator, platform, properties)
    context.setPositions(_initial_positions(params.n_molecules, length, rng) / 10.0 * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(params.temperature * unit.kelvin, _openmm_seed(rng))
    integrator.step(int(round(params.equilibration * 1000.0 / params.timestep)))
    log.info("cg_water: %d %s molecules in a %.3f A box, equilibrated %.1f ps on OpenMM %s",
             params.n_molecules, WATER_MODELS[params.water_model][1], length, params.equilibration, params.platform)

    symbols = ["O", "H", "H"] * params.n_molecules
    force_unit = unit.kilojoule_per_mole / unit.nanometer
    every = max(1, params.n_frames // 10)
    for frame in range(params.n_frames):
        integrator.step(params.stride)
        state = context.getState(getPositions=True, getForces=True)
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        forces = state.getForces(asNumpy=True).value_in_unit(force_unit) * KJ_MOL_NM_TO_EV_A
        atoms = Atoms(symbols, positions=positions, cell=np.eye(3) * length, pbc=True, masses=masses)
        atoms.arrays["forces"] = forces
        atoms.info.update(frame_index=frame, time_ps=(frame + 1) * params.stride * params.timestep / 1000.0)
        if (frame + 1) % every == 0:
            log.info("cg_water: frame %d / %d", frame + 1, params.n_frames)
        yield atoms


def _reference(params: Params) -> Reference:
    name = WATER_MODELS[params.water_model][1]
    settings = {
        "water_model": f"{name} (OpenMM {WATER_MODELS[params.water_model][0]}, rigid)",
        "n_molecules": params.n_molecules,
        "density_g_cm3": params.density,
        "box_A": round(box_length(params.n_molecules, params.density), 6),
        "ensemble": "NVT",
        "temperature_K": params.temperature,
        "integrator": "LangevinMiddleIntegrator",
        "friction_per_ps": params.friction,
        "timestep_fs": params.timestep,
        "electrostatics": "PME",
        "cutoff_A": params.cutoff,
        "ewald_tolerance": params.ewald_tolerance,
        "equilibration_ps": params.equilibration,
        "stride_steps": params.stride,
        "platform": params.platform,
        "threads": params.threads if params.platform == "CPU" else None,
        "bead": "molecular centre of mass; force = sum of the molecule's atomic forces",
    }
    return Reference(
        f"{name} classical all-atom water, coarse-grained to molecular centres of mass",
        f"openmm {version('openmm')}",
        settings,
        energy_unit="none",
        force_unit="eV/A",
    )


def _bead_info(bead_symbol: str) -> str:
    return f"coarse-grained H2O molecule (centre of mass); symbol {bead_symbol} is a label, not that element"


def _finish(frames: list[Atoms], params: Params) -> list[Atoms]:
    """Subsets and shuffle positions on frames in trajectory order."""
    subsets, shuffled = assign_subsets(len(frames), params.split_seed, params.validation_start,
                                       params.validation_fraction, params.test_fraction)
    for atoms, subset, position in zip(frames, subsets, shuffled):
        atoms.info.update(subset=str(subset), shuffled_index=int(position))
    return frames


def generate(params: Params, seed: int) -> list[Atoms]:
    """Coarse-grained frames of an all-atom OpenMM water simulation (see the module docstring).

    Parameters
    ----------
    params : Params
        System, dynamics, sizes and splits (units in :class:`Params`).
    seed : int
        Master seed of the initial structure, velocities and thermostat noise.

    Returns
    -------
    list of ase.Atoms
        ``params.n_frames`` frames in trajectory order, each ``n_molecules`` beads in
        the periodic cubic box with ``arrays["forces"]`` (eV/A), ``arrays["masses"]``
        (amu), no energy, ``info["subset"]``, ``info["shuffled_index"]``,
        ``info["frame_index"]``, ``info["time_ps"]``, ``info["bead"]`` and the reference.
    """
    reference = _reference(params)
    bead = _bead_info(params.bead_symbol)
    frames = [
        annotate(coarse_grain(atoms, 3, params.bead_symbol), reference, bead=bead)
        for atoms in simulate(params, seed)
    ]
    return _finish(frames, params)


def _is_all_atom_water(atoms: Atoms) -> bool:
    n = len(atoms)
    return n > 0 and n % 3 == 0 and atoms.get_chemical_symbols() == ["O", "H", "H"] * (n // 3)


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Frames read from a file: coarse-grain all-atom water (O, H, H, ...) if needed, then assign subsets.

    A file of beads is taken as it is (one bead per molecule, forces in eV/A).
    Subsets follow the module's "Splits" over the frames in file order.
    """
    out = []
    for i, atoms in enumerate(frames):
        if _is_all_atom_water(atoms):
            atoms = coarse_grain(atoms, 3, params.bead_symbol)
            atoms.info["bead"] = _bead_info(params.bead_symbol)
        elif "forces" not in atoms.arrays:
            raise DatasetError(f"cg_water frame {i}: no arrays['forces'] (arrays: {sorted(atoms.arrays)})")
        out.append(atoms)
    return _finish(out, params)
