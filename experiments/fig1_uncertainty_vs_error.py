"""Figure 1 (Section III): empirical errors against last-layer uncertainties of SOAP-BPNN, PaiNN and MACE.

For each trained network (experiment.models: SOAP-BPNN and PaiNN on QM9, MACE on Si
clusters, one train_model job each, shared with Figs 2 and 3), the analysis builds the
paper's last-layer covariance (:func:`experiments.models._network.paper_llpr`: energy
rows of the structures it was trained on, atom-averaged for SOAP-BPNN and MACE and summed
for PaiNN, as each was trained, plus sigma^2 = 2.5e-11) and, for every validation and
test structure, the variance 1 / PR of its energy (per atom for the averaged models) and
its error against the reference. One scale alpha (``rigidity.calibrate``, maximum
likelihood) is fitted on the validation set; the test set is then compared with
sigma = sqrt(alpha / PR):

- ``points``: per test structure, |error|, variance and calibrated sigma (top row: |error|
  against sigma on log axes with the isolines |e| = z sigma enclosing 68 / 95 / 99 % of a
  Gaussian);
- ``table``: per model, the Spearman correlation of variance and squared error, alpha, the
  fractions of test errors within 1, 2 and 3 sigma, the test RMSE, and the bottom row's
  points: squared error and variance averaged over bins of ``per_bin`` test structures of
  similar variance (the paper: 50 QM9, 25 Si).

The paper states no number for this figure ("a linear correlation between the actual and
estimated errors can be clearly observed for all three models"); the closing note of the
issue compares with its panels. References: QM9's B3LYP (DFT); the generated Si clusters
carry GFN2-xTB (not DFT): the table and the figure say which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING, DictConfig

from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .layout import data_key, model_key

log = logging.getLogger(__name__)


@dataclass
class Settings(ExperimentConfig):
    calibrate: bool = MISSING  # scale variances on the validation set before comparing with errors
    per_bin: dict[str, int] = field(default_factory=dict)  # dataset -> test structures per point of the bottom row

OUTPUTS = {"table": "csv", "points": "csv"}


# -- the statistics of the figure and its table ------------------------------------------------------------------
#: probability mass of a Gaussian inside the isolines of the top row (68 / 95 / 99 %)
ISOLINE_LEVELS = (0.68, 0.95, 0.99)


def isoline_factors(levels=ISOLINE_LEVELS) -> np.ndarray:
    """z with P(|e| < z sigma) = level for e ~ N(0, sigma^2): the isolines |e| = z sigma (straight on log axes)."""
    from scipy.special import erfinv

    levels = np.asarray(levels, dtype=float)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"isoline levels must lie in (0, 1), got {levels.tolist()}")
    return np.sqrt(2.0) * erfinv(levels)


def coverage(errors, sigma, ks=(1, 2, 3)) -> dict[int, float]:
    """Fraction of |error| <= k sigma for each k (a calibrated Gaussian: 68.3 / 95.4 / 99.7 %)."""
    errors, sigma = np.abs(np.asarray(errors, float)), np.asarray(sigma, float)
    if errors.shape != sigma.shape or errors.size == 0:
        raise ValueError(f"errors {errors.shape} and sigma {sigma.shape} must be non-empty and of one shape")
    return {int(k): float(np.mean(errors <= k * sigma)) for k in ks}


def binned(variance, squared_error, per_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of variance and squared error over bins of ``per_bin`` predictions of similar variance.

    The predictions are sorted by variance and cut into consecutive groups of ``per_bin``
    (the paper: 50 QM9 / 25 Si test structures); a last group smaller than ``per_bin`` is
    dropped, so that every point averages the same number of predictions.
    """
    v, e = np.asarray(variance, float), np.asarray(squared_error, float)
    if v.shape != e.shape or v.ndim != 1:
        raise ValueError(f"variance {v.shape} and squared error {e.shape} must be 1-D and of one shape")
    if per_bin < 1 or per_bin > v.size:
        raise ValueError(f"per_bin must be between 1 and the {v.size} predictions, got {per_bin}")
    order = np.argsort(v, kind="stable")
    n = (v.size // per_bin) * per_bin
    return v[order[:n]].reshape(-1, per_bin).mean(1), e[order[:n]].reshape(-1, per_bin).mean(1)


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def check(cfg: DictConfig) -> None:
    """Values the schema cannot check."""
    s = typed(cfg.experiment)
    missing = sorted({m.dataset for m in s.models} - set(s.per_bin))
    if missing:
        raise ValueError(f"experiment.per_bin names no bin size for {missing} (it has {dict(s.per_bin)})")
    bad = {k: v for k, v in s.per_bin.items() if v < 1}
    if bad:
        raise ValueError(f"experiment.per_bin: bin sizes must be >= 1 test structures, got {bad}")
    for m in s.models:
        if len(m.runs) != 1:
            raise ValueError(f"experiment.models: {m.model} on {m.dataset} must name one run, got {list(m.runs)}")


UNITS = {"mean": "eV/atom", "sum": "eV"}


# -- analysis -----------------------------------------------------------------------------------------------------
def analyse(cfg: DictConfig) -> dict[str, Table]:
    """Calibrated last-layer uncertainties against test errors, per model."""
    import pandas as pd

    from rigidity import calibrate

    from ._results import reference_methods
    from .datasets.io import read_frames
    from .models._network import fitted_llpr, predictions, subset, trained

    check(cfg)
    s = typed(cfg.experiment)
    points, rows, references = [], [], []
    for need in s.models:
        frames = read_frames(input_path(cfg, data_key(need.dataset)), energy_key="energy", forces_key=None)
        run = need.runs[0]
        net = trained(input_path(cfg, model_key(need.model, need.dataset, run)), frames)
        reduce = net.config.rigidity.reduce
        llpr = fitted_llpr(net, frames)
        valid, test = subset(frames, "validation"), subset(frames, "test")
        references.append(reference_methods(test))
        p_valid, p_test = predictions(llpr, valid, reduce), predictions(llpr, test, reduce)
        e_valid = p_valid["energy"] - p_valid["reference"]
        error = p_test["energy"] - p_test["reference"]
        alpha = calibrate(p_valid["variance"], e_valid) if s.calibrate else 1.0
        variance = alpha * p_test["variance"]
        sigma = np.sqrt(variance)
        unit = UNITS[reduce]
        common = dict(model=need.model, dataset=need.dataset, dataset_reference=references[-1], run=run,
                      reduce=reduce)
        test_rows = [i for i, a in enumerate(frames) if a.info.get("subset") == "test"]
        points.append(pd.DataFrame(dict(**common, structure=test_rows, n_atoms=p_test["n_atoms"].astype(int),
                                        error=error, abs_error=np.abs(error), variance=variance, sigma=sigma,
                                        unit=unit)))

        def add(quantity, value, unit, common=common, **extra):
            rows.append(dict(**common, quantity=quantity, value=float(value), unit=unit, **extra))

        add("n_train", len(net.rows), "1")
        add("n_validation", len(valid), "1")
        add("n_test", len(test), "1")
        add("calibration_scale", alpha, "1")
        add("spearman_variance_squared_error", spearman(variance, error**2), "1")
        for k, fraction in coverage(error, sigma).items():
            add(f"within_{k}_sigma", fraction, "1", gaussian=float(2 * _normal_cdf(k) - 1))
        add("test_rmse", np.sqrt(np.mean(error**2)), unit)
        add("validation_rmse", np.sqrt(np.mean(e_valid**2)), unit)
        add("mean_pr", np.mean(1.0 / p_test["variance"]), f"1/({unit})^2")
        per_bin = int(s.per_bin[need.dataset])
        if per_bin <= len(test):  # value: the bin's mean squared error; variance: its mean calibrated variance
            v, e2 = binned(variance, error**2, per_bin)
            for b, (vb, eb) in enumerate(zip(v, e2)):
                add("bin_squared_error", eb, f"({unit})^2", bin=b, variance=vb, per_bin=per_bin)
        else:
            log.warning("%s: %d test structures, fewer than a bin of %d: no binned points", need.model, len(test),
                        per_bin)
        log.info("%s on %s (run %s): alpha %.3g, Spearman %.3f, within 1/2/3 sigma %s, test RMSE %.3g %s",
                 need.model, need.dataset, run, alpha, spearman(variance, error**2), coverage(error, sigma),
                 np.sqrt(np.mean(error**2)), UNITS[reduce])
    table = pd.DataFrame(rows, columns=["model", "dataset", "dataset_reference", "run", "reduce", "quantity", "bin",
                                        "per_bin", "variance", "value", "gaussian", "unit"])
    table["bin"] = table["bin"].astype("Int64")
    table["per_bin"] = table["per_bin"].astype("Int64")
    reference = " + ".join(sorted(set(references)))
    return {"table": Table(table, reference), "points": Table(pd.concat(points, ignore_index=True), reference)}


def _normal_cdf(k: float) -> float:
    from scipy.stats import norm

    return float(norm.cdf(k))


# -- figure -------------------------------------------------------------------------------------------------------
LABELS = {"soap_bpnn": "SOAP-BPNN", "painn": "PaiNN", "mace": "MACE"}


def plot(cfg: DictConfig):
    """Top row: |error| against calibrated sigma with Gaussian isolines; bottom: binned squared error against
    variance with y = x; one column per model."""
    import matplotlib.pyplot as plt

    t, pts = read_table(input_path(cfg, "table")), read_table(input_path(cfg, "points"))
    models = list(dict.fromkeys(pts["model"]))
    scale = t["scale"].iloc[0]
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 8.0), constrained_layout=True, squeeze=False)
    z = isoline_factors()
    for j, model in enumerate(models):
        p = pts[pts["model"] == model]
        m = t[t["model"] == model]
        unit, dataset = p["unit"].iloc[0], p["dataset"].iloc[0]
        reference = p["dataset_reference"].iloc[0]
        note = "" if "b3lyp" in reference.lower() or "dft" in reference.lower() else " (not DFT)"
        value = {q: float(v) for q, v in zip(m["quantity"], m["value"]) if q != "bin_squared_error"}
        ax = axes[0, j]
        ax.scatter(p["sigma"], p["abs_error"], s=5, alpha=0.5, lw=0, color="tab:blue")
        lo = float(min(p["sigma"].min(), p["abs_error"][p["abs_error"] > 0].min()))
        hi = float(max(p["sigma"].max(), p["abs_error"].max()))
        grid = np.geomspace(lo / 2, hi * 2, 50)
        for zk, level in zip(z, ISOLINE_LEVELS):
            ax.plot(grid, zk * grid, color="0.6", lw=0.8, ls="--")
            x = lo * 1.5  # labels at the left end, inside the axes
            ax.text(x, zk * x, f"{100 * level:.0f}%", fontsize=7, color="0.4", va="bottom", clip_on=True)
        ax.plot(grid, grid, color="k", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=(lo / 2, hi * 2), ylim=(lo / 2, hi * 2),
               xlabel=f"predicted error sigma = sqrt(alpha / PR), {unit}", ylabel=f"|error|, {unit}")
        within = ", ".join(f"{100 * value[f'within_{k}_sigma']:.0f}" for k in (1, 2, 3))
        ax.set_title(f"{LABELS.get(model, model)} on {dataset} (n = {int(value['n_train'])})\n"
                     f"alpha {value['calibration_scale']:.3g}; within 1/2/3 sigma: {within} %", fontsize=9)
        ax = axes[1, j]
        b = m[m["quantity"] == "bin_squared_error"]
        ax.plot(b["variance"], b["value"], "o", color="tab:red", ms=4)
        if len(b):
            lo, hi = float(min(b["variance"].min(), b["value"].min())), float(max(b["variance"].max(),
                                                                                    b["value"].max()))
            ax.plot([lo / 2, hi * 2], [lo / 2, hi * 2], color="k", lw=0.8)
            ax.set(xlim=(lo / 2, hi * 2), ylim=(lo / 2, hi * 2))
        per_bin = int(b["per_bin"].iloc[0]) if len(b) else 0
        ax.set(xscale="log", yscale="log", xlabel=f"predicted variance alpha / PR, ({unit})^2",
               ylabel=f"squared error, ({unit})^2")
        ax.set_title(f"means over {per_bin} test structures; Spearman "
                     f"{value['spearman_variance_squared_error']:.2f}\nreference: {reference}{note}", fontsize=9)
    for ax in axes.flat:
        plain_log_ticks(ax)
    fig.suptitle(f"Fig. 1: empirical errors against calibrated last-layer uncertainties; scale: {scale}", fontsize=10)
    return fig


def plain_log_ticks(ax) -> None:
    """Decade labels only on log axes (no crowded labels of minor ticks)."""
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
