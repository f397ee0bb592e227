"""Ridge regression through the SVD, shared by the linear-model experiments (Figs 4 and 7)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def ridge_path(X: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    r"""Weights minimising :math:`\lVert X w - y\rVert^2 + \alpha \lVert w\rVert^2` for every alpha: (len(alphas), d).

    :math:`w = V\,\mathrm{diag}(s / (s^2 + \alpha))\,U^\top y` from one SVD of X: no normal equations,
    whose condition number (largest eigenvalue over a small alpha) would cost most of float64.
    """
    U, s, Vt = np.linalg.svd(np.asarray(X, dtype=float), full_matrices=False)
    Uy = U.T @ np.asarray(y, dtype=float)
    a = np.asarray(alphas, dtype=float)[:, None]
    return (s / (s**2 + a) * Uy) @ Vt
