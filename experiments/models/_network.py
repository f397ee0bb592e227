"""What every neural-network model config has (trained by its own package: Figs 1-3, 8-9)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from ..config import ModelConfig


@dataclass
class NetworkRigidity:
    regularizer: float = 2.5e-11  # sigma^2 added to the last-layer covariance (sigma = 5e-6, SETTINGS.md)
    reduce: str = MISSING  # structure rows of the PR: mean (atom-averaged) | sum of the last-layer features


@dataclass
class NetworkConfig(ModelConfig):
    max_epochs: int = MISSING  # training epochs (paper values; smaller at smoke and quick)
    seed: int = 0  # training seed (initial weights, batch order) when the run key names none
    rigidity: NetworkRigidity = field(default_factory=NetworkRigidity)


def untrained(model: NetworkConfig) -> NotImplementedError:
    """The error of a network whose training stage is not written yet."""
    return NotImplementedError(
        f"model {model.name} ({model.module}): training {model.module} networks is not implemented yet "
        f"(experiments/models/{model.module}.py defines only its config schema; the last-layer issue adds train())"
    )
