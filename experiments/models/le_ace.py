"""Linear LE-ACE carbon models (Figs 4 and 5).

Features. :class:`rigidity.descriptors.ace.ACE` with ``radial="laplacian"``: radial
functions are the Laplacian eigenstates of the cutoff sphere, j_l(z_nl r / r_c), and
the basis of body order nu keeps the products whose eigenvalues z_nl^2 add up to at
most ``E_max[nu]`` (dimensionless, as in LE-ACE). ``E_max[0]`` is the body order zero:
one composition column (the atom count for summed features, 1 for per-atom ones),
which carries the per-atom energy of the model. Trailing zeros of ``E_max`` drop the
highest body orders. The paper's LE-ACE used its "physical" radial basis, eigenstates
of a different radial problem tabulated by the LE-ACE code; this project implements
the plain Laplacian eigenstates of the same E_max.

Fit (:func:`fit_validated`, called by Fig 4's analysis at every refit). A ridge
regression of total energies on summed features, with an unpenalised per-atom
energy e0 (the mean energy per atom of the fitted structures) and the feature
columns divided by fixed scales (their RMS over the initial training set), so that
one regulariser means the same for every body order, whose summed features differ by
orders of magnitude. The regulariser is the one of the ``fit`` grid with the lowest
energy RMSE on a validation set, solved through the SVD of the scaled features.

Hessian rows (rule accumulate_hessian, Fig 5's covariance): the structures' features
divided by their atom count (``rigidity.reduce: mean``) or summed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING

from ..config import ModelConfig
from .ridge import ridge_path

RADIAL_BASES = ("laplacian",)
REDUCTIONS = ("mean", "sum")


@dataclass
class Descriptor:
    species: str = "C"  # the one element of the structures (the descriptor is species-blind)
    cutoff: float = MISSING  # A, radial cutoff
    E_max: list[float] = MISSING  # Laplacian eigenvalue cut-off z_nl^2 per body order nu = 0, 1, ... (dimensionless)
    radial_basis: str = "laplacian"  # laplacian: j_l(z_nl r / r_c), the only one implemented


@dataclass
class Fit:
    validation_fraction: float = 0.2  # share of the training MD runs held out to choose the ridge regulariser
    validation_seed: int = 7  # numpy default_rng seed of that hold-out
    alpha_min: float = 1.0e-8  # smallest ridge regulariser tried (on features scaled to unit RMS)
    alpha_max: float = 1.0e3  # largest ridge regulariser tried
    n_alphas: int = 23  # regularisers tried, log-spaced


@dataclass
class Rigidity:
    regularizer: float = 1.0e-5  # sigma^2 added to H = sum_s g_s g_s^T
    reduce: str = "mean"  # rows of H: structure features divided by the atom count (mean) or summed (sum)


@dataclass
class Config(ModelConfig):
    descriptor: Descriptor = field(default_factory=Descriptor)
    fit: Fit | None = None  # how the model is fitted (Fig 4's refits); null where no figure fits it
    rigidity: Rigidity | None = None  # the rows of a Hessian built from the features (Fig 5)


def total_degrees(E_max: Sequence[float]) -> list[float]:
    """ACE's ``total_degree`` (one entry per body order nu >= 1) from LE-ACE's ``E_max`` (nu = 0, 1, ...)."""
    E = [float(e) for e in E_max]
    if len(E) < 2 or E[0] != 0:
        raise ValueError(f"model.descriptor.E_max must start with 0 (body order 0, the composition) and name nu >= 1, "
                         f"got {list(E_max)}")
    orders = E[1:]
    while orders and orders[-1] == 0:
        orders.pop()
    if not orders or any(e <= 0 for e in orders):
        raise ValueError(f"model.descriptor.E_max = {list(E_max)}: body orders 1..nu_max need positive cut-offs "
                         "(only trailing zeros may drop orders)")
    return orders


def check(model: Config) -> None:
    """Values a schema cannot check."""
    if model.descriptor.radial_basis not in RADIAL_BASES:
        raise ValueError(f"model.descriptor.radial_basis must be one of {list(RADIAL_BASES)}, "
                         f"got {model.descriptor.radial_basis!r}")
    total_degrees(model.descriptor.E_max)
    if model.fit is not None:
        f = model.fit
        if not 0 < f.validation_fraction < 1:
            raise ValueError(f"model.fit.validation_fraction must lie in (0, 1), got {f.validation_fraction!r}")
        if not 0 < f.alpha_min < f.alpha_max:
            raise ValueError(f"model.fit.alpha_min, alpha_max must satisfy 0 < min < max, "
                             f"got {f.alpha_min}, {f.alpha_max}")
        if f.n_alphas < 1:
            raise ValueError(f"model.fit.n_alphas must be a positive integer, got {f.n_alphas!r}")
    if model.rigidity is not None and model.rigidity.reduce not in REDUCTIONS:
        raise ValueError(f"model.rigidity.reduce must be one of {list(REDUCTIONS)}, got {model.rigidity.reduce!r}")


def descriptor(model: Config):
    """The :class:`~rigidity.descriptors.ace.ACE` that ``model.descriptor`` describes."""
    from rigidity.descriptors.ace import ACE

    check(model)
    d = model.descriptor
    return ACE(cutoff=float(d.cutoff), total_degree=total_degrees(d.E_max), radial="laplacian", species=d.species)


def block_sizes(ace) -> dict[str, int]:
    """Columns per body order of :func:`structure_features`, the composition column (nu = 0) first."""
    return {"nu=0": 1, **ace.block_sizes}


def structure_features(ace, frames, reduce: str) -> np.ndarray:
    """(n_frames, 1 + n_features): the composition column, then the summed ("sum") or mean ("mean") ACE features."""
    frames = list(frames)
    X = ace.structure_features(frames, reduce=reduce)
    comp = np.array([len(a) for a in frames], dtype=float) if reduce == "sum" else np.ones(len(frames))
    return np.hstack([comp[:, None], X])


def atom_features(ace, frames) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom rows (1, then the ACE features), the local-energy features of the LPR; and each row's frame."""
    X, structure = ace.atom_features(list(frames))
    return np.hstack([np.ones((len(X), 1)), X]), structure


def features(model: Config, frames, kind: str):
    """Summed ("structures") or per-atom ("atoms") LE-ACE features of ``frames``."""
    from .._results import FeatureSet

    ace = descriptor(model)
    frames = list(frames)
    t0 = time.perf_counter()
    if kind == "structures":
        X, structure = structure_features(ace, frames, reduce="sum"), None
    else:
        X, structure = atom_features(ace, frames)
    edges = np.cumsum([0, *block_sizes(ace).values()])
    blocks = {k: (int(a), int(b)) for k, a, b in zip(block_sizes(ace), edges[:-1], edges[1:])}
    n_atoms = np.array([len(a) for a in frames])
    return FeatureSet(X, n_atoms, blocks, {"descriptor": repr(ace), "seconds": time.perf_counter() - t0}, structure)


def hessian_rows(model: Config, frames) -> np.ndarray:
    """Rows of H: every structure's features, divided by its atom count (``rigidity.reduce: mean``) or summed."""
    if model.rigidity is None:
        raise ValueError(f"model {model.name} has no rigidity section: a Hessian of it needs model.rigidity.reduce")
    return structure_features(descriptor(model), frames, reduce=model.rigidity.reduce)


# ----------------------------------------------------------------------------------------------
# the validated ridge fit (Fig 4)


def alphas(fit: Fit) -> np.ndarray:
    return np.logspace(np.log10(float(fit.alpha_min)), np.log10(float(fit.alpha_max)), int(fit.n_alphas))


def column_scales(X: np.ndarray) -> np.ndarray:
    """RMS of every column (1 where a column is zero), the fixed scaling of the ridge."""
    rms = np.sqrt(np.mean(np.asarray(X, dtype=float) ** 2, axis=0))
    return np.where(rms > 0, rms, 1.0)


@dataclass(frozen=True)
class RidgeFit:
    """E = N e0 + (X / scales) . w: per-atom energy e0, column scales and weights, regulariser alpha."""

    alpha: float
    e0: float
    scales: np.ndarray
    weights: np.ndarray
    validation_rmse: float

    def predict(self, X: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        return np.asarray(n_atoms, dtype=float) * self.e0 + (X / self.scales) @ self.weights


def fit_validated(X: np.ndarray, energy: np.ndarray, n_atoms: np.ndarray, X_val: np.ndarray, energy_val: np.ndarray,
                  n_val: np.ndarray, alphas: Sequence[float], scales: np.ndarray) -> RidgeFit:
    """Ridge fit of total energies, the regulariser chosen among ``alphas`` by the validation energy RMSE.

    For each alpha, w = argmin |(X / scales) w - (E - N e0)|^2 + alpha |w|^2, from one SVD
    (:func:`experiments.models.ridge.ridge_path`). Ties go to the larger alpha (the smoother model).
    """
    alphas = np.asarray(sorted(float(a) for a in alphas), dtype=float)
    if alphas.size == 0 or not np.all(alphas > 0):
        raise ValueError(f"alphas must be positive regularisers, got {alphas.tolist()}")
    if len(X) == 0 or len(X_val) == 0:
        raise ValueError(f"a validated fit needs training and validation structures, got {len(X)} and {len(X_val)}")
    n_atoms, n_val = np.asarray(n_atoms, dtype=float), np.asarray(n_val, dtype=float)
    e0 = float(np.mean(energy / n_atoms))
    Xv = X_val / scales
    best = None
    for alpha, w in zip(alphas[::-1], ridge_path(X / scales, energy - n_atoms * e0, alphas[::-1])):
        rmse = float(np.sqrt(np.mean((n_val * e0 + Xv @ w - energy_val) ** 2)))
        if best is None or rmse < best.validation_rmse:
            best = RidgeFit(float(alpha), e0, scales, w, rmse)
    return best
