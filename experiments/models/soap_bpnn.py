"""SOAP-BPNN through metatrain's soap_bpnn (Figs 1-3): config schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._network import NetworkConfig


@dataclass
class Soap:
    cutoff: float = 5.0  # A, SOAP radial cutoff
    max_radial: int = 9  # n_max, radial basis functions
    max_angular: int = 9  # l_max, spherical harmonics
    atomic_gaussian_width: float = 0.3  # A, density smearing


@dataclass
class Optimizer:
    lr: float = 1.0e-3  # Adam learning rate
    batch_size: int = 100  # structures per batch (not stated in SETTINGS.md: our choice)


@dataclass
class Config(NetworkConfig):
    soap: Soap = field(default_factory=Soap)
    hidden_layers: list[int] = field(default_factory=lambda: [64, 64])  # neurons per hidden layer
    target: str = "energy_per_atom"  # regression target: energy per atom (the paper's per-atom energy target)
    dtype: str = "float64"  # training precision
    optimizer: Optimizer = field(default_factory=Optimizer)
