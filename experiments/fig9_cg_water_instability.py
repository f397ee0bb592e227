"""Figure 9 (Appendix C): LPR of beads along an MD trajectory that becomes unstable.

Settings only: the analysis and the figure come with the coarse-grained water issue;
the trajectory is Fig 8's run_md job of the model trained on 50 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    n_snapshots: int = MISSING  # frames shown along the trajectory
