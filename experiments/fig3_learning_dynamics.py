"""Figure 3 (Section III): LPR distributions of test molecules along training and against training-set size.

Settings only: the analysis and the figure come with the last-layer library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    checkpoint_epochs: list[int] = field(default_factory=list)  # epochs whose last-layer LPRs are shown (panel a)
    n_test_molecules: int = MISSING  # molecules whose atom LPRs are shown
