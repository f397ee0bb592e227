"""Figure 2 (Section III): committee variance of local energies against the last-layer LPR.

Settings only: the analysis and the figure come with the last-layer library. The
committee members are runs of experiment.models (n1000-s0 ... n1000-s9: ten random
10 % subsets of the 10,000 training molecules), trained by train_model jobs shared
with Fig 1's main models.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    pass
