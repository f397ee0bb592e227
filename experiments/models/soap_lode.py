"""SOAP (short range) + LODE (long range) ridge models of water with featomic (Fig 7).

Features: :class:`rigidity.descriptors.soap_lode.SoapLode`, per atom, an SR block
(SOAP power spectrum, cutoff 2.8 A) and an LR block, by default the paper's LODE x LODE
power spectrum (``descriptor.lr_block: lode_lode``; ``density_lode`` is the SOAP density x
LODE product), built on the LODE coefficients ``non_orthogonal`` (reciprocal-space LODE of
every atom) or ``range_separated`` (minus the real-space part of the atoms within the SR
cutoff): ``descriptor.variant``. The feature stage stores structure sums.

Fit (``fit.reduce: mean``, the paper's): e = x-bar . w + sum_Z f_Z e_Z per atom, a linear
model on the atom-mean features x-bar = X / N and per-atom energies E / N, plus per-species
energies e_Z fitted by least squares (minimum norm) to the training structures'
composition fractions f_Z (``fit.baseline: composition``; with one composition, as for the
dimers, this is the paper's centring on the mean per-atom energy). ``fit.reduce: sum`` fits
total energies on structure sums instead (alpha then weighs differently: with N atoms per
structure, mean with alpha is sum with N^2 alpha). The weights minimise |X w - y|^2 +
alpha |w|^2 (alpha = 1e-11, paper) through the SVD of X
(:func:`experiments.models.ridge.ridge`): with n < d, exact to rounding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING

from ..config import ModelConfig
from .ridge import ridge

VARIANTS = ("non_orthogonal", "range_separated")
LR_BLOCKS = ("lode_lode", "density_lode")
BASELINES = ("composition", "none")
REDUCTIONS = ("mean", "sum")


@dataclass
class Soap:
    cutoff: float = 2.8  # A, SOAP cutoff (also the range-separation radius)
    n_radial: int = 4  # number of GTO radial functions (paper: n = 4; featomic max_radial = 3)
    max_angular: int = 3  # l_max of both expansions (paper: 3)
    atomic_gaussian_width: float = 0.3  # A, Gaussian width of the SOAP density
    cutoff_width: float = 0.25  # A, shifted-cosine smoothing width below the cutoff


@dataclass
class Lode:
    exponent: int = 3  # p of the smeared 1/r^p potential
    atomic_gaussian_width: float = 1.2  # A, smearing of the power law
    k_cutoff: float = math.pi  # 1/A, reciprocal-space cutoff
    n_radial: int = 4  # number of monomial radial functions
    radius: float = 2.8  # A, radius of the monomial basis
    background_correction: bool = True  # remove featomic's k = 0 offset (see rigidity/descriptors/soap_lode.py)
    spline_accuracy: float = 1.0e-8  # accuracy of the splined reciprocal-space radial integrals
    real_space_spline_accuracy: float = 1.0e-6  # accuracy of the splined real-space integrals of the range separation


@dataclass
class Descriptor:
    species: list[int] = MISSING  # atomic numbers of the feature layout; any other element is an error
    variant: str = MISSING  # non_orthogonal | range_separated: the LODE coefficients of the LR block
    lr_block: str = "lode_lode"  # lode_lode (paper: LODE x LODE power spectrum) | density_lode (SOAP density x LODE)
    soap: Soap = field(default_factory=Soap)
    lode: Lode = field(default_factory=Lode)
    box_edge: float = 40.0  # A, edge of the cubic periodic box around every structure


@dataclass
class Fit:
    ridge_alpha: float = MISSING  # ridge regulariser alpha of |X w - y|^2 + alpha |w|^2; also H's for the CPR
    baseline: str = "composition"  # composition: per-species energies fitted to the training set; none: raw totals
    reduce: str = "mean"  # mean: atom-mean features, per-atom energies (paper) | sum: structure sums, total energies


@dataclass
class Config(ModelConfig):
    descriptor: Descriptor = field(default_factory=Descriptor)
    fit: Fit = field(default_factory=Fit)


def check(model: Config) -> None:
    if model.descriptor.variant not in VARIANTS:
        raise ValueError(f"model.descriptor.variant must be one of {list(VARIANTS)}, got {model.descriptor.variant!r}")
    if not model.fit.ridge_alpha > 0:
        raise ValueError(f"model.fit.ridge_alpha must be positive, got {model.fit.ridge_alpha}")
    if model.fit.baseline not in BASELINES:
        raise ValueError(f"model.fit.baseline must be one of {list(BASELINES)}, got {model.fit.baseline!r}")
    if model.descriptor.lr_block not in LR_BLOCKS:
        raise ValueError(f"model.descriptor.lr_block must be one of {list(LR_BLOCKS)}, "
                         f"got {model.descriptor.lr_block!r}")
    if model.fit.reduce not in REDUCTIONS:
        raise ValueError(f"model.fit.reduce must be one of {list(REDUCTIONS)}, got {model.fit.reduce!r}")


def descriptor(model: Config):
    """The :class:`~rigidity.descriptors.soap_lode.SoapLode` that ``model.descriptor`` describes."""
    from rigidity.descriptors.soap_lode import SoapLode

    check(model)
    d = model.descriptor
    soap, lode = d.soap, d.lode
    return SoapLode(
        list(d.species),
        cutoff=soap.cutoff, n_radial=soap.n_radial, max_angular=soap.max_angular,
        atomic_gaussian_width=soap.atomic_gaussian_width, cutoff_width=soap.cutoff_width,
        lode_exponent=lode.exponent, lode_smearing=lode.atomic_gaussian_width, k_cutoff=lode.k_cutoff,
        lode_n_radial=lode.n_radial, lode_radius=lode.radius, lr_block=d.lr_block, box_edge=d.box_edge,
        background_correction=lode.background_correction, lode_spline_accuracy=lode.spline_accuracy,
        real_space_spline_accuracy=lode.real_space_spline_accuracy,
    )


def composition(frames, species) -> np.ndarray:
    """(n_structures, n_species) atom counts per species."""
    species = list(species)
    return np.array([[int(np.sum(a.numbers == z)) for z in species] for a in frames], dtype=float)


def features(model: Config, frames, kind: str):
    """Summed ("structures") or per-atom ("atoms") SOAP+LODE features of one variant; blocks SR, LR."""
    from .._results import FeatureSet

    desc = descriptor(model)
    variant = model.descriptor.variant
    frames = list(frames)
    t0 = time.perf_counter()
    desc.density_calculator(), desc.lode_calculator(), desc.background()
    if variant == "range_separated":
        desc.real_space_lode_calculator()
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = desc.compute(frames, [variant])[variant]
    X = f.structure_sums() if kind == "structures" else f.values
    blocks = {k: (v.start, v.stop) for k, v in desc.blocks.items()}
    meta = {"descriptor": desc.hypers(), "variant": variant, "species": list(desc.species),
            "seconds": {"splines": t_setup, "features": time.perf_counter() - t0}}
    return FeatureSet(X, np.array([len(a) for a in frames]), blocks, meta,
                      None if kind == "structures" else f.structure)


def reduced(X: np.ndarray, frames, reduce: str) -> np.ndarray:
    """Rows of ``X`` (structure sums, or compositions) divided by the atom counts for ``reduce = "mean"``."""
    if reduce == "sum":
        return X
    counts = np.array([len(a) for a in frames], dtype=float)
    return X / (counts[:, None] if X.ndim == 2 else counts)


def baseline(C: np.ndarray, E: np.ndarray, kind: str) -> np.ndarray:
    """Per-species energies (eV) from the compositions C (n, S) and energies E (n,): min-norm least squares."""
    if kind == "none":
        return np.zeros(C.shape[1])
    return np.linalg.lstsq(C, E, rcond=None)[0]


def fit(model: Config, frames, features, rows: np.ndarray):
    """Per-species baseline and ridge weights on the (atom-mean or summed) features of ``rows``."""
    from .._results import TrainedModel

    check(model)
    reduce = model.fit.reduce
    E = reduced(np.array([float(a.info["energy"]) for a in frames]), frames, reduce)
    C = reduced(composition(frames, features.meta["species"]), frames, reduce)
    X = reduced(features.X, frames, reduce)
    e = baseline(C[rows], E[rows], model.fit.baseline)
    w, _ = ridge(X[rows], E[rows] - C[rows] @ e, model.fit.ridge_alpha)
    return TrainedModel({"w": w, "e": e, "species": np.array(features.meta["species"]), "rows": np.asarray(rows)},
                        {"ridge_alpha": float(model.fit.ridge_alpha), "n_train": int(len(rows)),
                         "variant": model.descriptor.variant, "lr_block": model.descriptor.lr_block,
                         "reduce": reduce})
