r"""Calibration of rigidity-based uncertainties on validation data."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import as_vector

__all__ = ["calibrate"]


def calibrate(variance: Any, residuals: Any, method: str = "nll") -> float:
    r"""Scale :math:`\alpha` such that :math:`\alpha\,v_i` matches the squared residuals :math:`r_i^2`.

    Parameters
    ----------
    variance : (n,) uncalibrated variances :math:`v_i = \mathbf g_i^\top \mathbf H^{-1} \mathbf g_i`
        (:meth:`rigidity.Hessian.variance`) of n validation predictions.
    residuals : (n,) prediction minus reference for the same predictions.
    method : "nll" (default) maximises the Gaussian likelihood of the residuals,
        :math:`r_i \sim \mathcal N(0, \alpha v_i)`, which gives
        :math:`\alpha = \frac1n \sum_i r_i^2 / v_i`; "ratio" matches the totals,
        :math:`\alpha = \sum_i r_i^2 / \sum_i v_i`.

    Returns
    -------
    alpha : float. Calibrated standard deviations are :math:`\sqrt{\alpha v_i}`.
    """
    v = as_vector(variance, "variance")
    r = as_vector(residuals, "residuals")
    if v.shape != r.shape:
        raise ValueError(f"variance of shape {v.shape} and residuals of shape {r.shape} differ")
    if v.size == 0:
        raise ValueError("calibrate needs at least one validation prediction")
    nonpos = np.flatnonzero(v <= 0)
    if nonpos.size:
        raise ValueError(f"variance must be > 0; entries {nonpos[:5].tolist()} are {v[nonpos[:5]].tolist()}")
    if method == "nll":
        return float(np.mean(r**2 / v))
    if method == "ratio":
        return float(np.sum(r**2) / np.sum(v))
    raise ValueError(f"method must be 'nll' or 'ratio', got {method!r}")
