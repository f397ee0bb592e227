"""PaiNN through schnetpack 2.2 (Figs 1-2): config schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._network import NetworkConfig


@dataclass
class Optimizer:
    lr: float = 5.0e-4  # Adam learning rate
    batch_size: int = 100  # structures per batch


@dataclass
class Config(NetworkConfig):
    cutoff: float = 5.0  # A, neighbour cutoff
    n_atom_basis: int = 128  # features per atom (schnetpack default; not stated in SETTINGS.md)
    n_interactions: int = 3  # message-passing layers (schnetpack default)
    aggregation: str = "sum"  # readout aggregation over atoms
    optimizer: Optimizer = field(default_factory=Optimizer)
