"""Geometry of single water molecules: distorted monomers, random orientations, internal coordinates.

Shared by :mod:`.water_monomers` and :mod:`.water_dimers`, so that the molecules
of the dimers (Fig 7's training set) and the isolated monomers (Fig 7's
extrapolation set) are drawn from the same distribution of distortions, and
labelled by the same tight-binding loop (:func:`label_drawn`).

A molecule is stored O, H, H (the order of the paper's files). Its two O-H bond
lengths are drawn independently and uniformly in ``[bond_min, bond_max]`` (A)
and its H-O-H angle uniformly in ``[angle_min, angle_max]`` (degrees); the
molecule is then rotated by a rotation drawn uniformly from SO(3) (Haar
measure) about its oxygen. For reference, the GFN2-xTB (tblite 0.8)
equilibrium of an isolated molecule is r(O-H) = 0.959 A and
angle(H-O-H) = 107.2 degrees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed

from .references import REFERENCES, calculator, label

__all__ = [
    "random_rotation",
    "water_positions",
    "internal_coordinates",
    "sample_water",
    "check_range",
    "check_xtb_reference",
    "label_drawn",
]

log = logging.getLogger(__name__)

#: references the water generators accept (tblite tight binding)
XTB_REFERENCES = ("gfn2-xtb", "gfn1-xtb")


def check_range(name: str, low: float, high: float, positive: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``low <= high`` (and ``low > 0`` when ``positive``)."""
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"{name}: the range [{low}, {high}] is empty or not finite")
    if positive and low <= 0:
        raise ValueError(f"{name}: the range [{low}, {high}] must be positive")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly (Haar measure) from SO(3).

    A unit quaternion with four independent standard-normal components divided
    by their norm is uniform on the 3-sphere, and the quaternion-to-matrix map
    sends that to the uniform distribution on SO(3).

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        Orthogonal matrix with determinant +1; rotate row vectors as ``x @ R.T``.
    """
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def water_positions(r1: float, r2: float, angle_deg: float) -> np.ndarray:
    """Cartesian positions (A) of O, H, H with the oxygen at the origin in the xy plane.

    The H-O-H angle is bisected by the x axis:
    ``H_k = r_k (cos(a/2), +-sin(a/2), 0)``.

    Parameters
    ----------
    r1, r2 : float
        O-H bond lengths (A).
    angle_deg : float
        H-O-H angle (degrees).

    Returns
    -------
    numpy.ndarray, shape (3, 3)
    """
    half = np.deg2rad(angle_deg) / 2
    return np.array(
        [
            [0.0, 0.0, 0.0],
            [r1 * np.cos(half), r1 * np.sin(half), 0.0],
            [r2 * np.cos(half), -r2 * np.sin(half), 0.0],
        ]
    )


def internal_coordinates(positions: np.ndarray) -> tuple[float, float, float]:
    """O-H bond lengths (A) and H-O-H angle (degrees) of one molecule stored O, H, H.

    Parameters
    ----------
    positions : numpy.ndarray, shape (3, 3)
        Positions of O, H, H (A), as one whole molecule (no periodic images).
    """
    positions = np.asarray(positions, dtype=float)
    if positions.shape != (3, 3):
        raise ValueError(f"a water molecule needs positions of shape (3, 3) (O, H, H), got {positions.shape}")
    d1, d2 = positions[1] - positions[0], positions[2] - positions[0]
    r1, r2 = float(np.linalg.norm(d1)), float(np.linalg.norm(d2))
    cos = np.clip(d1 @ d2 / (r1 * r2), -1.0, 1.0)
    return r1, r2, float(np.rad2deg(np.arccos(cos)))


def sample_water(
    rng: np.random.Generator,
    bond_min: float,
    bond_max: float,
    angle_min: float,
    angle_max: float,
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One distorted, randomly oriented water molecule with its oxygen at the origin.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all random numbers (two bond lengths, one angle, one rotation).
    bond_min, bond_max : float
        Range of each O-H bond length, drawn independently and uniformly (A).
    angle_min, angle_max : float
        Range of the H-O-H angle, drawn uniformly (degrees).

    Returns
    -------
    positions : numpy.ndarray, shape (3, 3)
        O, H, H (A).
    internal : tuple of float
        The drawn (r1, r2, angle) in A, A, degrees.
    """
    check_range("O-H bond length (A)", bond_min, bond_max)
    check_range("H-O-H angle (degrees)", angle_min, angle_max)
    if angle_max >= 180.0:
        raise ValueError(f"H-O-H angle range [{angle_min}, {angle_max}] must stay below 180 degrees")
    r1, r2 = rng.uniform(bond_min, bond_max, size=2)
    angle = rng.uniform(angle_min, angle_max)
    positions = water_positions(r1, r2, angle) @ random_rotation(rng).T
    return positions, (float(r1), float(r2), float(angle))


def check_xtb_reference(reference: str) -> None:
    if reference not in XTB_REFERENCES:
        raise ValueError(f"reference {reference!r} is not one of {XTB_REFERENCES} (this generator labels with tblite)")


def label_drawn(n: int, draw: Callable[[], tuple[Atoms, dict[str, Any], str]], params: Any, what: str) -> list[Atoms]:
    """Label ``n`` structures from ``draw()`` with ``params.reference``, redrawing after SCF failures.

    ``draw`` returns (structure, info to add once labelled, a description for the
    log). ``params`` carries ``reference``, ``electronic_temperature`` (K),
    ``accuracy`` and ``max_redraws``; more failures than that raise RuntimeError.
    """
    settings = dict(electronic_temperature=float(params.electronic_temperature), accuracy=float(params.accuracy))
    method = REFERENCES[params.reference][0]
    calc = calculator(params.reference, **settings)
    frames: list[Atoms] = []
    failures = 0
    while len(frames) < n:
        atoms, info, description = draw()
        try:
            atoms = label(atoms, params.reference, calc=calc, **settings)
        except CalculationFailed as err:
            failures += 1
            log.warning("%s failed on %s: %s; redrawing", method, description, err)
            if failures > params.max_redraws:
                raise RuntimeError(f"{failures} SCF failures, more than max_redraws = {params.max_redraws}") from err
            calc = calculator(params.reference, **settings)
            continue
        atoms.info.update(info)
        frames.append(atoms)
    log.info("%d %s labelled with %s (%d redrawn after SCF failures)", len(frames), what, method, failures)
    return frames
