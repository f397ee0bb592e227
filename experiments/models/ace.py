"""Linear ACE with body-order blocks, self-interacting or purified (Fig 6).

Features: :class:`rigidity.descriptors.ace.ACE`, blocks nu = 1..``correlation_order``
(Chebyshev radial basis), summed per structure; ``descriptor.purified`` picks the
flavour (sums over distinct neighbour tuples only).

Fit: per-atom energy targets y = E / N - ``isolated_atom_energy`` on atom-mean
features x = (sum of the atoms' rows) / N, w = argmin |X w + b - y|^2 + alpha |w|^2
(:func:`experiments.models.ridge.ridge`). The paper centred its targets (b = mean y);
``fit.center_targets`` is false by default: an intercept is a body-order-zero
constant that a cluster expansion does not have, and with it the nu = 1 component
could match the two-body curve only up to that constant. Stillinger-Weber's isolated
atom is at 0 eV, so y needs no centring to be a cluster expansion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING

from ..config import ModelConfig
from .ridge import ridge


@dataclass
class Descriptor:
    cutoff: float = MISSING  # A, radial cutoff (paper: 5.5)
    correlation_order: int = MISSING  # highest body order nu (paper: 4); total_degree has one entry per nu
    # maximal total degree per nu = 1..4; degree of (n, l) is n + angular_weight * l
    total_degree: list[float] = MISSING
    angular_weight: float = 1.5  # weight of l in the degree
    radial_inner: float = 0.0  # A, distance mapped to x = -1 by the Chebyshev radial basis
    purified: bool = False  # true: sums over distinct neighbour tuples only (purified ACE)
    species: str = "Si"  # the one element of the structures


@dataclass
class Fit:
    # ridge regulariser on atom-mean features (paper: 1e-3); also H's regulariser for the CPR
    ridge_alpha: float = MISSING
    center_targets: bool = False  # true: subtract the training mean per-atom energy (an intercept)
    isolated_atom_energy: float = 0.0  # eV, subtracted per atom from the targets (Stillinger-Weber: 0)


@dataclass
class Config(ModelConfig):
    descriptor: Descriptor = field(default_factory=Descriptor)
    fit: Fit = field(default_factory=Fit)


def check(model: Config) -> None:
    d = model.descriptor
    if not 1 <= d.correlation_order <= len(d.total_degree):
        raise ValueError(f"model.descriptor.correlation_order = {d.correlation_order} needs 1 <= nu <= "
                         f"len(total_degree) = {len(d.total_degree)}")
    if not model.fit.ridge_alpha > 0:
        raise ValueError(f"model.fit.ridge_alpha must be positive, got {model.fit.ridge_alpha}")


def descriptor(model: Config):
    from rigidity.descriptors.ace import ACE

    check(model)
    d = model.descriptor
    return ACE(cutoff=d.cutoff, total_degree=list(d.total_degree)[: d.correlation_order], purified=d.purified,
               angular_weight=d.angular_weight, radial_inner=d.radial_inner, species=d.species)


def features(model: Config, frames, kind: str):
    """Summed ("structures") or per-atom ("atoms") ACE features, blocks nu=1 ... nu=<correlation_order>."""
    from .._results import FeatureSet

    ace = descriptor(model)
    frames = list(frames)
    t0 = time.perf_counter()
    if kind == "structures":
        X, structure = ace.structure_features(frames, reduce="sum"), None
    else:
        X, structure = ace.atom_features(frames)
    edges = np.cumsum([0, *ace.block_sizes.values()])
    blocks = {k: (int(a), int(b)) for k, a, b in zip(ace.block_sizes, edges[:-1], edges[1:])}
    n_atoms = np.array([len(a) for a in frames])
    return FeatureSet(X, n_atoms, blocks, {"descriptor": repr(ace), "seconds": time.perf_counter() - t0}, structure)


def targets(model: Config, frames) -> np.ndarray:
    """Per-atom energy targets y = E / N - isolated_atom_energy (eV)."""
    E = np.array([float(a.info["energy"]) for a in frames])
    N = np.array([len(a) for a in frames])
    return E / N - float(model.fit.isolated_atom_energy)


def fit(model: Config, frames, features, rows: np.ndarray):
    """Ridge weights and intercept on the atom-mean features of ``rows``."""
    from .._results import TrainedModel

    check(model)
    X = features.X / features.n_atoms[:, None]
    w, b = ridge(X[rows], targets(model, frames)[rows], model.fit.ridge_alpha, model.fit.center_targets)
    return TrainedModel({"w": w, "b": np.array(b), "rows": np.asarray(rows)},
                        {"ridge_alpha": float(model.fit.ridge_alpha), "n_train": int(len(rows))})
