"""Figure 2 (Section III): committee variance of local energies against the last-layer LPR.

Settings and the statistics (local energies, committee variance, normalised LPR; the bins
are Fig 1's); the analysis and the figure come with the networks' quick-scale sizes. The
committee members are runs of experiment.models (n1000-s0 ... n1000-s9: ten random
10 % subsets of the 10,000 training molecules), trained by train_model jobs shared
with Fig 1's main models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    pass


# -- the statistics of the figure ---------------------------------------------------------------------------------
def local_energies(ll, frames, batch_size: int = 16):
    """(n_atoms,) each atom's energy as the model's last layer writes it, phi_i . w + c_i (summing to the model's
    energy of each structure), and the structure of each atom."""
    out = ll.compute(frames, batch_size=batch_size)
    return out["phi"] @ ll.weights + out["constants"], out["structure"]


def committee_variance(local: list[np.ndarray]) -> np.ndarray:
    """Variance over committee members (unbiased, ddof = 1) of each atom's local energy; members x atoms."""
    stack = np.asarray(local, dtype=float)
    if stack.ndim != 2 or stack.shape[0] < 2:
        raise ValueError(f"a committee needs at least 2 members' local energies of the same atoms, got {stack.shape}")
    return stack.var(axis=0, ddof=1)


def normalised_lpr(lpr: np.ndarray) -> np.ndarray:
    """LPRs divided by their largest value on the test set (the figure's x axis)."""
    lpr = np.asarray(lpr, dtype=float)
    if lpr.size == 0 or not np.all(lpr > 0):
        raise ValueError("LPRs must be a non-empty set of positive numbers")
    return lpr / lpr.max()
