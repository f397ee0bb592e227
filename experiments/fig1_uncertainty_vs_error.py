"""Figure 1 (Section III): empirical errors against last-layer uncertainties of SOAP-BPNN, PaiNN and MACE.

Settings and the statistics of the figure (isolines, coverage, bins, rank correlation);
the analysis and the plot come with the networks' quick-scale sizes (the networks are
trained by train_model jobs: experiment.models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    calibrate: bool = MISSING  # scale variances on the validation set before comparing with errors


# -- the statistics of the figure and its table ------------------------------------------------------------------
#: probability mass of a Gaussian inside the isolines of the top row (68 / 95 / 99 %)
ISOLINE_LEVELS = (0.68, 0.95, 0.99)


def isoline_factors(levels=ISOLINE_LEVELS) -> np.ndarray:
    """z with P(|e| < z sigma) = level for e ~ N(0, sigma^2): the isolines |e| = z sigma (straight on log axes)."""
    from scipy.special import erfinv

    levels = np.asarray(levels, dtype=float)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"isoline levels must lie in (0, 1), got {levels.tolist()}")
    return np.sqrt(2.0) * erfinv(levels)


def coverage(errors, sigma, ks=(1, 2, 3)) -> dict[int, float]:
    """Fraction of |error| <= k sigma for each k (a calibrated Gaussian: 68.3 / 95.4 / 99.7 %)."""
    errors, sigma = np.abs(np.asarray(errors, float)), np.asarray(sigma, float)
    if errors.shape != sigma.shape or errors.size == 0:
        raise ValueError(f"errors {errors.shape} and sigma {sigma.shape} must be non-empty and of one shape")
    return {int(k): float(np.mean(errors <= k * sigma)) for k in ks}


def binned(variance, squared_error, per_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of variance and squared error over bins of ``per_bin`` predictions of similar variance.

    The predictions are sorted by variance and cut into consecutive groups of ``per_bin``
    (the paper: 50 QM9 / 25 Si test structures); a last group smaller than ``per_bin`` is
    dropped, so that every point averages the same number of predictions.
    """
    v, e = np.asarray(variance, float), np.asarray(squared_error, float)
    if v.shape != e.shape or v.ndim != 1:
        raise ValueError(f"variance {v.shape} and squared error {e.shape} must be 1-D and of one shape")
    if per_bin < 1 or per_bin > v.size:
        raise ValueError(f"per_bin must be between 1 and the {v.size} predictions, got {per_bin}")
    order = np.argsort(v, kind="stable")
    n = (v.size // per_bin) * per_bin
    return v[order[:n]].reshape(-1, per_bin).mean(1), e[order[:n]].reshape(-1, per_bin).mean(1)


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)
