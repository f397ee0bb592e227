"""Figure 8 (Section VI): coarse-grained water MACE models: PR along MD, g(r) and q4 against the all-atom reference.

Settings only: the analysis and the figure come with the coarse-grained water issue.
One train_model job per training set (runs n<size>-s<subset>), one run_md job per
model and accumulate_hessian / merge_hessian jobs of its force rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Rdf:
    bins: int = 200  # g(r) histogram bins over [0, r_max]
    r_max: float = 6.0  # A


@dataclass
class Steinhardt:
    l: list[int] = field(default_factory=lambda: [4, 6])  # orders of the local Steinhardt parameters
    r_max: float = 3.6  # A, neighbour cutoff
    kde_bandwidth: float = 0.004  # bandwidth of the q_l density estimate


@dataclass
class Settings(ExperimentConfig):
    rdf: Rdf = field(default_factory=Rdf)
    steinhardt: Steinhardt = field(default_factory=Steinhardt)
    n_test_frames: int = MISSING  # test frames whose PR is the reference line
