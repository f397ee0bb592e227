"""MACE through mace-torch 0.3.16 (Figs 1-2 on Si clusters; Figs 8-9 on coarse-grained water): config schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from ._network import NetworkConfig


@dataclass
class Optimizer:
    batch_size: int = 10  # structures per batch
    patience: int = 100  # epochs without validation improvement before stopping
    ema: bool = True  # exponential moving average of the weights


@dataclass
class Config(NetworkConfig):
    r_max: float = MISSING  # A, radial cutoff
    hidden_irreps: str = MISSING  # node features, e.g. 128x0e+128x1o
    correlation: int = 3  # body order of the symmetric contraction minus one
    max_ell: int = 3  # largest spherical harmonic
    activation: str | None = None  # non-linearity of the gates and readout (null: mace-torch's default)
    loss: str = "energy_forces"  # energy_forces | forces (force matching, no energy target)
    E0: Any = None  # eV per atom: a number, "isolated_atom_energy" (the dataset's info key), or null (none)
    last_layer_features: int | None = None  # expected number of last-layer features (a check), e.g. 144
    optimizer: Optimizer = field(default_factory=Optimizer)
