"""The contract every last-layer adapter keeps (see :mod:`rigidity.last_layer`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

REDUCTIONS = ("sum", "mean")


def check_frames(frames: Sequence[Any]) -> list:
    """The structures as a list of ``ase.Atoms``; refuses an empty list or other objects, naming them."""
    if hasattr(frames, "get_positions"):
        frames = [frames]
    frames = list(frames)
    if not frames:
        raise ValueError("no structures given: expected a non-empty list of ase.Atoms")
    for k, atoms in enumerate(frames):
        if not hasattr(atoms, "get_positions") or not hasattr(atoms, "numbers"):
            raise ValueError(f"structure {k} is a {type(atoms).__name__}, expected an ase.Atoms")
        if len(atoms) == 0:
            raise ValueError(f"structure {k} has no atoms")
    return frames


class Parts:
    """Per-batch arrays (torch tensors or numpy) collected by key and concatenated at the end, as float64 numpy
    (``structure`` as int): what every adapter's loop over batches returns."""

    def __init__(self):
        self._parts: dict[str, list] = {}

    def add(self, **arrays) -> None:
        for key, value in arrays.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu()
                value = value.numpy() if key == "structure" else value.double().numpy()
            self._parts.setdefault(key, []).append(np.asarray(value))

    def result(self) -> dict[str, np.ndarray]:
        out = {key: np.concatenate(values) for key, values in self._parts.items()}
        out["structure"] = out["structure"].astype(int)
        return out


class LastLayer(ABC):
    """Per-atom last-layer features, readout weights and constants of a trained model.

    Subclasses implement :meth:`_compute` (features, constants and optionally force rows
    of a list of structures) and set ``weights`` and ``blocks``.
    """

    #: (d,) readout weights, float64
    weights: np.ndarray
    #: name -> slice of the columns of phi
    blocks: dict[str, slice]

    @property
    def n_features(self) -> int:
        return int(len(self.weights))

    @abstractmethod
    def _compute(self, frames: list, forces: bool, stress: bool, reduce: str, batch_size: int,
                 mode: str) -> dict[str, np.ndarray]:
        """Keys ``phi`` (n_atoms, d), ``constants`` (n_atoms,), ``structure`` (n_atoms,), ``energy``
        (n_structures,) as the model computes it; with ``forces`` ``force_rows`` (3 n_atoms, d); with
        ``stress`` ``stress_rows`` (6 n_structures, d) (all structures periodic, checked by ``compute``)."""

    def compute(self, frames, forces: bool = False, stress: bool = False, reduce: str = "sum",
                batch_size: int = 16, mode: str = "auto") -> dict[str, np.ndarray]:
        """Everything in one pass over the structures: the keys of ``features``, ``constants``,
        ``force_rows`` and ``stress_rows`` (``phi``, ``structure``, ``constants``, ``energy``,
        ``force_rows``, ``stress_rows``), the rows of Phi reduced by ``reduce``."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        from ._autograd import MODES

        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        frames = check_frames(frames)
        if stress:
            for k, atoms in enumerate(frames):
                if not all(atoms.pbc) or abs(atoms.cell.volume) < 1e-12:
                    raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) is not periodic in all three "
                                     "directions: stress rows need a cell")
        return self._compute(frames, bool(forces), bool(stress), reduce, int(batch_size), mode)

    def features(self, frames, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``(phi, structure)``: (n_atoms, d) last-layer features and the structure index of each atom."""
        out = self.compute(frames, batch_size=batch_size)
        return out["phi"], out["structure"]

    def constants(self, frames, batch_size: int = 16) -> np.ndarray:
        """(n_atoms,) per-atom constants c_i: the energy is sum_i (phi_i . w + c_i)."""
        return self.compute(frames, batch_size=batch_size)["constants"]

    def force_rows(self, frames, reduce: str = "sum", batch_size: int = 16,
                   mode: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        r"""``(rows, structure)``: rows :math:`-\partial \Phi_s / \partial r_{a\alpha}`, (3 n_atoms, d).

        :math:`\Phi_s` is the sum (``reduce="sum"``) or the mean over its atoms of the
        structure's features; row 3a + alpha is atom a's component alpha (x, y, z), atoms
        of all structures in order; ``structure`` (3 n_atoms,) says whose row it is. With
        ``reduce="sum"`` these are the derivatives of the forces with respect to the
        weights, the force rows of the Gauss-Newton Hessian (eq. 6). ``mode``: "reverse"
        (one backward pass per feature), "forward" (one pass per atom coordinate of the
        largest structure) or "auto" (the cheaper; see :mod:`rigidity.last_layer._autograd`).
        """
        out = self.compute(frames, forces=True, reduce=reduce, batch_size=batch_size, mode=mode)
        return out["force_rows"], np.repeat(out["structure"], 3)

    def stress_rows(self, frames, reduce: str = "sum", batch_size: int = 16, mode: str = "auto") -> np.ndarray:
        r"""(6 n_structures, d) rows :math:`\frac{1}{V_s} \partial \Phi_s / \partial \epsilon` of periodic structures.

        Voigt order xx, yy, zz, yz, xz, xy, ASE's sign (the stress is
        :math:`\frac{1}{V} \partial E / \partial \epsilon`): ``rows @ weights`` is the
        model's stress without its constant terms. Refuses structures without a 3D cell.
        """
        return self.compute(frames, stress=True, reduce=reduce, batch_size=batch_size, mode=mode)["stress_rows"]

    def evaluate(self, frames, batch_size: int = 16) -> dict[str, np.ndarray]:
        """The model's own energy (n_structures,) and ``forces`` (n_atoms, 3), with phi, structure and constants.

        One forward and one backward pass of the energy where the adapter supports it (what
        an MD step needs); this default builds the force rows and contracts them with the
        weights, adding the forces of position-dependent constants (``constant_forces``).
        """
        out = self.compute(frames, forces=True, batch_size=batch_size)
        forces = (out["force_rows"] @ self.weights).reshape(-1, 3)
        if "constant_forces" in out:
            forces = forces + out["constant_forces"]
        out["forces"] = forces
        return out

    def energies(self, frames, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``(reconstructed, model)``: sum_i (phi_i . w + c_i) per structure, and the model's own energies."""
        out = self.compute(frames, batch_size=batch_size)
        n = int(out["structure"].max()) + 1
        rebuilt = np.bincount(out["structure"], weights=out["phi"] @ self.weights + out["constants"], minlength=n)
        return rebuilt, out["energy"]
