"""Figure 3 (Section III): LPR distributions of test molecules along training and against training-set size.

Settings and the statistic of panels (a) and (b) (the normalised relative LPR difference);
the analysis and the figure come with the networks' quick-scale sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING

from .config import ExperimentConfig


@dataclass
class Settings(ExperimentConfig):
    checkpoint_epochs: list[int] = field(default_factory=list)  # epochs whose last-layer LPRs are shown (panel a)
    n_test_molecules: int = MISSING  # molecules whose atom LPRs are shown


# -- the statistics of the figure ---------------------------------------------------------------------------------
def normalised_relative_difference(lpr, reference) -> float:
    """The paper's average normalised relative LPR difference of a model from the reference (final) model.

    Each model's LPRs are divided by its LPR of environment j, the reference model's most
    rigid environment ("normalized by LPR_j of each model, where j is the highest LPR
    environment for the original model", Sec. III.2); the difference from the reference
    is then taken relative to the reference's normalised LPR and averaged over environments.
    A model whose LPRs are the reference's times a constant has difference 0.
    """
    lpr, reference = np.asarray(lpr, dtype=float), np.asarray(reference, dtype=float)
    if lpr.shape != reference.shape or lpr.ndim != 1 or lpr.size == 0:
        raise ValueError(f"LPRs {lpr.shape} and reference {reference.shape} must be 1-D, non-empty, of one shape")
    if not (np.all(lpr > 0) and np.all(reference > 0)):
        raise ValueError("LPRs must be positive")
    j = int(np.argmax(reference))
    a, b = lpr / lpr[j], reference / reference[j]
    return float(np.mean(np.abs(a - b) / b))
