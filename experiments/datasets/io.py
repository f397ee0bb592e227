"""Reading, checking and writing datasets as extended XYZ.

Every structure a dataset stage writes carries its provenance in ``info``:
``dataset``, ``subset``, ``reference_method`` (e.g. "GFN2-xTB"), ``reference_program``
(program and version), ``reference_settings`` (JSON), ``energy_unit`` and
``force_unit``; total energies under ``info["energy"]`` and forces under
``arrays["forces"]``. Files are written to a temporary name and renamed, so a
failed or interrupted stage never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

__all__ = [
    "DatasetError",
    "Reference",
    "write_frames",
    "read_frames",
    "check_frames",
    "annotate",
    "take_calculator_results",
]


class DatasetError(ValueError):
    """A dataset file or structure that cannot be used, with the file, frame and key at fault."""


class Reference(dict):
    """Provenance of the labels: method, program (with version), settings and units."""

    def __init__(self, method: str, program: str, settings: dict | None = None, energy_unit: str = "eV",
                 force_unit: str = "eV/A"):
        super().__init__(
            reference_method=method,
            reference_program=program,
            reference_settings=json.dumps(settings or {}, sort_keys=True),
            energy_unit=energy_unit,
            force_unit=force_unit,
        )


def annotate(atoms: Atoms, reference: Reference | dict, **info: Any) -> Atoms:
    """Record the reference method (and any extra info) on a structure; returns it."""
    atoms.info.update(reference)
    atoms.info.update(info)
    return atoms


def write_frames(frames: Iterable[Atoms], path: str | os.PathLike) -> Path:
    """Write frames to extended XYZ atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    frames = list(frames)
    if not frames:
        raise DatasetError(f"{path}: refusing to write an empty dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ase.io.write(tmp, frames, format="extxyz", write_results=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def take_calculator_results(atoms: Atoms) -> Atoms:
    """Move results ASE's reader put in a calculator back to ``info`` (forces to ``arrays``)."""
    if atoms.calc is not None:
        for key, value in atoms.calc.results.items():
            if key == "forces":
                atoms.arrays.setdefault("forces", np.asarray(value, dtype=float))
            else:
                atoms.info.setdefault(key, value)
        atoms.calc = None
    return atoms


def check_frames(
    frames: list[Atoms],
    source: str,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    periodic: bool | None = None,
) -> list[Atoms]:
    """Check every frame; raise :class:`DatasetError` naming source, frame and key.

    - positions must be finite;
    - ``info[energy_key]`` must be present and finite (when energy_key is not None);
    - ``arrays[forces_key]`` must have one finite row of 3 per atom (when forces_key is not None);
    - a periodic dataset (``periodic=True``) needs a cell of non-zero volume on every frame.
    """
    if not frames:
        raise DatasetError(f"{source}: no structures")
    for i, atoms in enumerate(frames):
        where = f"{source}, frame {i}"
        pos = atoms.get_positions()
        if not np.isfinite(pos).all():
            bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
            raise DatasetError(f"{where}: positions of atoms {bad[:5].tolist()} are NaN or inf")
        if energy_key is not None:
            if energy_key not in atoms.info:
                keys = sorted(k for k in atoms.info if not k.startswith("reference_"))
                raise DatasetError(f"{where}: no energy under info key {energy_key!r} (info keys: {keys})")
            try:
                e = float(atoms.info[energy_key])
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: info[{energy_key!r}] = {atoms.info[energy_key]!r} "
                                   f"is not a number") from None
            if not np.isfinite(e):
                raise DatasetError(f"{where}: info[{energy_key!r}] is {e}")
        if forces_key is not None:
            if forces_key not in atoms.arrays:
                raise DatasetError(f"{where}: no forces under arrays key {forces_key!r} "
                                   f"(arrays: {sorted(atoms.arrays)})")
            f = np.asarray(atoms.arrays[forces_key])
            if f.shape != (len(atoms), 3):
                raise DatasetError(
                    f"{where}: arrays[{forces_key!r}] has shape {f.shape}, "
                    f"expected ({len(atoms)}, 3) for {len(atoms)} atoms"
                )
            if not np.isfinite(f).all():
                raise DatasetError(f"{where}: arrays[{forces_key!r}] holds NaN or inf")
        if periodic:
            if not atoms.pbc.any() or abs(atoms.cell.volume) < 1e-8:
                raise DatasetError(f"{where}: the dataset is periodic but this structure has no cell "
                                   f"(pbc={atoms.pbc.tolist()})")
    return frames


def read_frames(
    path: str | os.PathLike,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    periodic: bool | None = None,
    index: str = ":",
) -> list[Atoms]:
    """Read an extended XYZ file and check it (see :func:`check_frames`).

    Energies found under ``energy_key`` are returned under ``info["energy"]`` and
    forces under ``arrays["forces"]`` whatever the file called them.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        frames = ase.io.read(path, index=index, format="extxyz")
    except Exception as err:  # ase raises many kinds on malformed files
        raise DatasetError(f"{path}: not a readable extended XYZ file ({type(err).__name__}: {err})") from None
    if isinstance(frames, Atoms):
        frames = [frames]
    for atoms in frames:
        take_calculator_results(atoms)
    check_frames(frames, str(path), energy_key, forces_key, periodic)
    for atoms in frames:
        if energy_key is not None and energy_key != "energy":
            atoms.info["energy"] = float(atoms.info.pop(energy_key))
        if forces_key is not None and forces_key != "forces":
            atoms.arrays["forces"] = np.asarray(atoms.arrays.pop(forces_key), dtype=float)
    return frames
