"""One large frame of liquid carbon: the structure whose lowest-LPR atom Fig 5 targets.

The paper (Section IV.2) takes a 13,824-atom liquid carbon frame from a large
molecular dynamics run (cubic 42.902 A box, 3.49 g/cm3) and looks for its atom
of lowest local prediction rigidity.

Sources
-------
``generate`` (offline, the default)
    ``n_atoms`` carbon atoms placed at random (no pair closer than
    ``min_distance``) in a cube of ``density``, held at ``temperature`` for
    ``steps`` Langevin steps with Tersoff forces (matscipy); the final snapshot
    is the frame. It is labelled with Tersoff energy (eV) and forces (eV/A),
    cheap at any size and recorded as such; Fig 5 itself needs positions only.
    The ``quick`` scale uses a few hundred atoms; the ``paper`` scale the
    paper's 13,824 atoms (box 42.90 A).

``file``
    Any extended XYZ, e.g. the paper's frame, which has positions only: set
    ``dataset.file.energy_key=null`` and ``dataset.file.forces_key=null`` (the
    defaults of this dataset) and say what the file is in
    ``dataset.file.reference_method`` (e.g. "none (positions only)").

There is no public archive of the frame alone (it is in the paper's code
repository, SanggyuChong/faraday_discussions_2024, section_4b/MD_structure.xyz).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import Atoms

from . import references
from .carbon import AMU_G_PAPER, cube_length, density_of, melt_quench, random_positions
from .carbon import Params as _CarbonParams
from .io import DatasetError

__all__ = ["Params", "generate", "prepare"]


@dataclasses.dataclass
class Params:
    n_atoms: int = 13824  # carbon atoms in the frame (paper: 13,824)
    density: float = 3.49  # g/cm3 (paper: 13,824 atoms in a 42.902 A cube = 3.49 g/cm3)
    min_distance: float = 1.2  # smallest pair distance of the random initial positions (A)
    temperature: float = 5000.0  # Langevin temperature of the liquid (K)
    steps: int = 2000  # MD steps at that temperature; the frame is the last one
    timestep: float = 1.0  # MD time step (fs)
    friction: float = 0.02  # Langevin friction (1/fs)
    reference: str = "tersoff"  # labels: tersoff (cheap, default) | any name of references.REFERENCES
    amu_g: float = AMU_G_PAPER  # grams per atomic mass unit in density = mass / volume (g)


def _check_params(params: Params) -> None:
    if params.n_atoms < 2:
        raise ValueError(f"n_atoms = {params.n_atoms} must be at least 2")
    if not 0.5 <= params.density <= 4.0:
        raise ValueError(f"density = {params.density} g/cm3 is outside the range 0.5-4.0 g/cm3 of carbon")
    if params.steps < 1:
        raise ValueError(f"steps = {params.steps} must be at least 1")
    if params.reference not in references.REFERENCES:
        raise ValueError(f"reference {params.reference!r} is not one of {sorted(references.REFERENCES)}")


def generate(params: Params, seed: int) -> list[Atoms]:
    """One liquid carbon frame after ``params.steps`` Langevin steps at ``params.temperature``.

    Deterministic under ``seed`` (``numpy.random.default_rng(seed)`` draws the
    positions, velocities and thermostat noise).

    Returns
    -------
    A list of one periodic :class:`ase.Atoms` with ``info`` keys ``subset`` ("liquid"),
    ``density`` (g/cm3), ``md_temperature`` (K), ``md_step``, ``energy`` (eV) and the
    reference record, and ``arrays["forces"]`` (eV/A).
    """
    _check_params(params)
    rng = np.random.default_rng(seed)
    length = cube_length(params.n_atoms, params.density, params.amu_g)
    atoms = Atoms(
        numbers=np.full(params.n_atoms, 6),
        positions=random_positions(params.n_atoms, length, params.min_distance, rng),
        cell=np.eye(3) * length,
        pbc=True,
    )
    md = _CarbonParams(
        timestep=params.timestep,
        friction=params.friction,
        melt_temperature=params.temperature,
        melt_steps=params.steps,
        quench_steps=0,
        snapshots_per_run=1,
    )
    ((step, temperature, frame),) = melt_quench(atoms, references.tersoff_calculator(), md, rng)
    frame.info.update(subset="liquid", density=density_of(frame, params.amu_g), md_step=step,
                      md_temperature=temperature)
    return [references.label(frame, params.reference)]


def prepare(frames: list[Atoms], params: Params, seed: int) -> list[Atoms]:
    """Mark frames read from a file or a download: subset "liquid" and density (g/cm3)."""
    for i, atoms in enumerate(frames):
        if abs(atoms.cell.volume) < 1e-8:
            raise DatasetError(f"carbon_liquid frame {i}: no cell, the frame must be periodic")
        atoms.info.setdefault("subset", "liquid")
        atoms.info["density"] = density_of(atoms, params.amu_g)
    return frames
