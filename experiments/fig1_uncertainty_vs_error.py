"""Figure 1 (Section III): empirical errors against last-layer uncertainties of SOAP-BPNN, PaiNN and MACE.

Settings only: the analysis and the figure come with the last-layer library (the
networks are trained by train_model jobs: experiment.models).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    calibrate: bool = MISSING  # scale variances on the validation set before comparing with errors
