"""Prediction rigidities (PR, LPR, CPR) for linear and last-layer atomistic models.

Chong, Bigi, Grasselli, Loche, Kellner, Ceriotti, *Prediction rigidities for
data-driven chemistry*, Faraday Discussions (2024).

>>> import numpy as np, rigidity
>>> h = rigidity.Hessian(3, regularizer=1e-6).add(np.random.default_rng(0).normal(size=(50, 3)))
>>> h.pr(np.ones((1, 3))).shape
(1,)
"""

from .calibration import calibrate
from .features import VOIGT, force_rows, loss_rows, stress_rows, structure_features
from .hessian import Hessian
from .selection import OBJECTIVES, GreedySelection, select_greedy

__version__ = "0.1.0"

__all__ = [
    "Hessian",
    "select_greedy",
    "GreedySelection",
    "OBJECTIVES",
    "calibrate",
    "structure_features",
    "force_rows",
    "stress_rows",
    "loss_rows",
    "VOIGT",
]
