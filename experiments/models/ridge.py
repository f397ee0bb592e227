"""The one ridge solver of the linear models: through the SVD of the design matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ridge_path", "ridge"]


def ridge_path(X: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    r"""Weights minimising :math:`\lVert X w - y\rVert^2 + \alpha \lVert w\rVert^2` for every alpha: (len(alphas), d).

    :math:`w = V\,\mathrm{diag}(s / (s^2 + \alpha))\,U^\top y` from one SVD of X (n, d): no normal
    equations, whose condition number (largest eigenvalue over a small alpha) would cost most of float64.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"ridge needs X of shape (n, d) and y of shape (n,), got {X.shape} and {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("ridge needs at least one training row, got none")
    a = np.asarray(alphas, dtype=float)
    if a.ndim != 1 or a.size == 0 or not np.all(a > 0):
        raise ValueError(f"ridge regularisers must be positive, got {a.tolist()}")
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    Uy = U.T @ y
    return (s / (s**2 + a[:, None]) * Uy) @ Vt


def ridge(X: np.ndarray, y: np.ndarray, alpha: float, center: bool = False) -> tuple[np.ndarray, float]:
    r"""Weights and intercept of :math:`\min \lVert X w + b - y\rVert^2 + \alpha \lVert w\rVert^2`.

    ``b`` is the mean of y when ``center`` (the intercept of centred targets, unpenalised), else 0.
    """
    y = np.asarray(y, dtype=float)
    b = float(y.mean()) if center else 0.0
    return ridge_path(X, y - b, [alpha])[0], b
