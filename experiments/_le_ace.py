"""Linear LE-ACE carbon models shared by Figures 4 and 5.

Features. :class:`rigidity.descriptors.ace.ACE` with ``radial="laplacian"``: radial
functions are the Laplacian eigenstates of the cutoff sphere, j_l(z_nl r / r_c), and
the basis of body order nu keeps the products whose eigenvalues z_nl^2 add up to at
most ``E_max[nu]`` (dimensionless, as in LE-ACE). ``E_max[0]`` is the body order zero:
one composition column (the atom count for summed features, 1 for per-atom ones),
which carries the per-atom energy of the model. Trailing zeros of ``E_max`` drop the
highest body orders.

Fit. A ridge regression of total energies on summed features, with an unpenalised
per-atom energy e0 (the mean energy per atom of the fitted structures) and the
feature columns divided by fixed scales (their RMS over the initial training set), so
that one regulariser means the same for every body order, whose summed features differ
by orders of magnitude. The regulariser is the one of ``alphas`` with the lowest energy
RMSE on a validation set, and the fit is solved through the SVD of the scaled features
(no normal equations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._linear import ridge_path

RADIAL_BASES = ("laplacian",)


def total_degrees(E_max: Sequence[float]) -> list[float]:
    """ACE's ``total_degree`` (one entry per body order nu >= 1) from LE-ACE's ``E_max`` (nu = 0, 1, ...)."""
    E = [float(e) for e in E_max]
    if len(E) < 2 or E[0] != 0:
        raise ValueError(f"model.E_max must start with 0 (body order 0, the composition) and name nu >= 1, got {list(E_max)}")
    orders = E[1:]
    while orders and orders[-1] == 0:
        orders.pop()
    if not orders or any(e <= 0 for e in orders):
        raise ValueError(f"model.E_max = {list(E_max)}: body orders 1..nu_max need positive cut-offs (only trailing zeros may drop orders)")
    return orders


def descriptor(model: dict):
    """The :class:`~rigidity.descriptors.ace.ACE` that ``model`` (config/model/le_ace.yaml) describes."""
    from rigidity.descriptors.ace import ACE

    if model["radial_basis"] not in RADIAL_BASES:
        raise ValueError(f"model.radial_basis must be one of {list(RADIAL_BASES)}, got {model['radial_basis']!r}")
    return ACE(cutoff=float(model["cutoff"]), total_degree=total_degrees(model["E_max"]), radial="laplacian",
               species=model["species"])


def block_sizes(ace) -> dict[str, int]:
    """Columns per body order of :func:`structure_features`, the composition column (nu = 0) first."""
    return {"nu=0": 1, **ace.block_sizes}


def structure_features(ace, frames, reduce: str) -> np.ndarray:
    """(n_frames, 1 + n_features): the composition column, then the summed ("sum") or mean ("mean") ACE features."""
    frames = list(frames)
    X = ace.structure_features(frames, reduce=reduce)
    comp = np.array([len(a) for a in frames], dtype=float) if reduce == "sum" else np.ones(len(frames))
    return np.hstack([comp[:, None], X])


def atom_features(ace, frames) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom rows (1, then the ACE features), the local-energy features of the LPR; and each row's frame."""
    X, structure = ace.atom_features(list(frames))
    return np.hstack([np.ones((len(X), 1)), X]), structure


def column_scales(X: np.ndarray) -> np.ndarray:
    """RMS of every column (1 where a column is zero), the fixed scaling of the ridge."""
    rms = np.sqrt(np.mean(np.asarray(X, dtype=float) ** 2, axis=0))
    return np.where(rms > 0, rms, 1.0)


@dataclass(frozen=True)
class RidgeFit:
    """E = N e0 + (X / scales) . w: per-atom energy e0, column scales and weights, regulariser alpha."""

    alpha: float
    e0: float
    scales: np.ndarray
    weights: np.ndarray
    validation_rmse: float

    def predict(self, X: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        return np.asarray(n_atoms, dtype=float) * self.e0 + (X / self.scales) @ self.weights


def fit_validated(X: np.ndarray, energy: np.ndarray, n_atoms: np.ndarray, X_val: np.ndarray, energy_val: np.ndarray,
                  n_val: np.ndarray, alphas: Sequence[float], scales: np.ndarray) -> RidgeFit:
    """Ridge fit of total energies, the regulariser chosen among ``alphas`` by the validation energy RMSE.

    For each alpha, w = argmin |(X / scales) w - (E - N e0)|^2 + alpha |w|^2, from one SVD
    (:func:`experiments._linear.ridge_path`).
    Ties go to the larger alpha (the smoother model).
    """
    alphas = np.asarray(sorted(float(a) for a in alphas), dtype=float)
    if alphas.size == 0 or not np.all(alphas > 0):
        raise ValueError(f"alphas must be positive regularisers, got {alphas.tolist()}")
    if len(X) == 0 or len(X_val) == 0:
        raise ValueError(f"a validated fit needs training and validation structures, got {len(X)} and {len(X_val)}")
    n_atoms, n_val = np.asarray(n_atoms, dtype=float), np.asarray(n_val, dtype=float)
    e0 = float(np.mean(energy / n_atoms))
    Xv = X_val / scales
    best = None
    for alpha, w in zip(alphas[::-1], ridge_path(X / scales, energy - n_atoms * e0, alphas[::-1])):
        rmse = float(np.sqrt(np.mean((n_val * e0 + Xv @ w - energy_val) ** 2)))
        if best is None or rmse < best.validation_rmse:
            best = RidgeFit(float(alpha), e0, scales, w, rmse)
    return best
