"""Figure 6 (Section V.1): body order in linear ACE, self-interacting against purified.

Linear ridge models on Si n-mers with ACE features split into body-order blocks
nu = 1..4 (:mod:`experiments.models.ace`: config/model/ace.yaml, self-interacting,
and ace_purified.yaml). Four training sets (runs set1 ... set4, named in
config/dataset/si_nmers.yaml) replace 50 pentamers at a time by dimers, trimers and
tetramers; one fit_model job per flavour and set, and the analysis computes

- the CPR of every nu block on the test pentamers (pentamers in no training set):
  1 / (x_c^T H^-1 x_c) with H = X^T X + alpha I and x_c the atom-mean feature
  vector with the other blocks zeroed (paper's definition), averaged over them
  (a purified block that is identically zero, a pentamer with no atom of nu
  neighbours within the cutoff, has an infinite CPR: those are counted in
  ``cpr_zero_block_count`` and left out of the mean and median; with the paper's
  clusters there are none at quick scale). The figure shows the median
  (``experiment.plot.cpr_statistic``): a block that is nearly zero (four neighbours
  just inside the cutoff) has a large CPR, and such pentamers pull the mean up
  (purified nu = 4 at quick scale: mean 0.70, median 0.20 for set 1);
- the CPR ratio per block, the mean (median) CPR of sets 2, 3 and 4 (dimers,
  trimers, tetramers added) over that of set 1 (pentamers only), per flavour:
  ``cpr_ratio_mean`` and ``cpr_ratio_median``. The paper gives no numbers, only its
  figure and text: self-interacting CPRs stay low with no resolution, purified ones
  rise in the nu block of the n-mers added, and in nu = 4 as well when tetramers
  are added;
- the predicted total energy along the Si-Si dimer curve, and the nu = 1
  component alone;
- beyond the paper: the RMSE of the nu = 1 component against the reference's
  two-body curve. The Stillinger-Weber reference has an exact two- plus
  three-body split (``info["energy_two_body"]``, ``info["energy_three_body"]``),
  so the per-block energies of the test pentamers are compared with it as well.

Model (:mod:`experiments.models.ace`): per-atom energy targets y = E / N - E_isolated
with atom-mean features, w = (X^T X + alpha I)^-1 X^T y (through the SVD of X), not
centred by default (``model.fit.center_targets``; the paper centred them). The CPR's
H is the fit's own, X^T X + alpha I over the run's training rows.

Reference: whatever the dataset's structures record (Stillinger-Weber at the
default scales, not DFT); the table and the figure carry it.

Departures from the paper (section_5a of its repository), and where the table says so:

- CPRs are averaged over held-out test pentamers (column ``cpr_pentamers``); the
  paper's are averaged over all of its pentamers, the training ones included;
- the figure shows the median, the table both (rows ``cpr_mean``, ``cpr_median``;
  the paper: mean);
- no intercept by default (above; the paper centred its targets): an
  ``intercept_per_atom`` row appears only when one is fitted;
- Stillinger-Weber labels, not DFT (column ``reference_method``);
- the clusters (:mod:`experiments.datasets.si_nmers`) are grown by the paper's
  rules, bonds 2.0-2.5 A and a constant-density size cap, but not farthest-point
  sampled; the ``test_pentamer_*`` rows measure them (shortest and longest
  nearest-neighbour distance, largest interatomic distance, A). Before this change
  the bonds were 2.0-3.6 A with no cap: 30 of 500 quick-scale test pentamers had
  an all-zero purified nu = 4 block, and adding tetramers moved the purified
  median CPR of nu = 3 by x0.98 and of nu = 4 by x1.10 (now x1.15 and x3.4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from ._results import frames_fingerprint, load_features, load_model, reference_methods
from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .layout import data_key, features_key, model_key

log = logging.getLogger(__name__)

FLAVOURS = ("self_interacting", "purified")
STATISTICS = ("mean", "median")


@dataclass
class Plot:
    # mean | median of the test pentamers' CPRs on the figure (the table has both; paper: mean)
    cpr_statistic: str = "median"


@dataclass
class Settings(ExperimentConfig):
    plot: Plot = field(default_factory=Plot)  # what only the figure reads


def check(cfg: DictConfig) -> None:
    """Values the schema cannot check."""
    s = typed(cfg.experiment)
    if s.plot.cpr_statistic not in STATISTICS:
        raise ValueError(f"experiment.plot.cpr_statistic must be one of {list(STATISTICS)}, "
                         f"got {s.plot.cpr_statistic!r}")
    if len(s.datasets) != 1 or not s.models or any(m.dataset != s.datasets[0] for m in s.models):
        raise ValueError(f"experiment.models must be ACE models trained on the one dataset of experiment.datasets, "
                         f"got datasets {s.datasets} and models {[(m.model, m.dataset) for m in s.models]}")


def flavour(features) -> str:
    """self_interacting or purified: the flavour of the ACE descriptor the features were computed with."""
    return "purified" if features.meta["model_config"]["descriptor"]["purified"] else "self_interacting"


def load_runs(cfg: DictConfig, s: Settings, frames) -> list[dict]:
    """Per model: its flavour, atom-mean features and blocks, and its trained runs (weights, training rows, label)."""
    out = []
    fingerprint = frames_fingerprint(frames)
    for need in s.models:
        fs = load_features(input_path(cfg, features_key(need.model, need.dataset)), frames)
        runs = []
        for run in need.runs:
            trained = load_model(input_path(cfg, model_key(need.model, need.dataset, run)), fingerprint)
            runs.append(dict(run=run, label=trained.meta.get("label", run), rows=trained.arrays["rows"],
                             w=trained.arrays["w"], b=float(trained.arrays["b"]),
                             alpha=float(trained.meta["ridge_alpha"])))
        out.append(dict(model=need.model, flavour=flavour(fs), X=fs.X / fs.n_atoms[:, None], blocks=fs.slices,
                        runs=runs))
    return out


def test_pentamers(subset: np.ndarray, models: list[dict]) -> np.ndarray:
    """The pentamers in no training set of any run: the test set."""
    used = np.unique(np.concatenate([r["rows"] for m in models for r in m["runs"]]))
    test = np.setdiff1d(np.flatnonzero(subset == "pentamer"), used)
    if len(test) == 0:
        raise ValueError(f"no pentamers left for the test set: the dataset has {int(np.sum(subset == 'pentamer'))}, "
                         "all of them are in training sets")
    return test


#: the pentamers the CPR is averaged over (a column of the table)
CPR_PENTAMERS = "held-out test pentamers (paper: all pentamers, training ones included)"


def cpr_ratios(rows: list[dict]) -> list[dict]:
    """Rows ``cpr_ratio_<statistic>``: each later training set's CPR statistic over the first set's, per block.

    The first training set of a flavour (set 1, pentamers only) is the baseline; a ratio of
    an infinite CPR (a block identically zero on every test pentamer) is nan.
    """
    out = []
    for statistic in STATISTICS:
        cpr = [r for r in rows if r["quantity"] == f"cpr_{statistic}"]
        for r in cpr:
            first = min(q["training_set"] for q in cpr if q["flavour"] == r["flavour"])
            if r["training_set"] == first:
                continue
            base = next(q["value"] for q in cpr if q["flavour"] == r["flavour"] and q["block"] == r["block"]
                        and q["training_set"] == first)
            ratio = r["value"] / base if np.isfinite(base) and np.isfinite(r["value"]) else np.nan
            out.append(dict(r, quantity=f"cpr_ratio_{statistic}", value=float(ratio)))
    return out


def pentamer_geometry(positions: list[np.ndarray]) -> list[dict]:
    """Rows that measure the test pentamers: shortest and longest nearest-neighbour distance, largest distance (A)."""
    nn, diameter = [], []
    for pos in positions:
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        diameter.append(d.max())
        np.fill_diagonal(d, np.inf)
        nn.append(d.min(axis=1))
    nn = np.concatenate(nn)
    common = dict(flavour="all", training_set=0, training_label="test pentamers", block="all")
    return [dict(common, quantity="test_pentamer_nn_distance_min", value=float(nn.min())),
            dict(common, quantity="test_pentamer_nn_distance_max", value=float(nn.max())),
            dict(common, quantity="test_pentamer_diameter_max", value=float(max(diameter)))]


# ----------------------------------------------------------------------------------------------
# analysis


def analyse(cfg: DictConfig) -> dict[str, Table]:
    """CPR per block on the test pentamers, dimer curves, and energies per block against the reference split."""
    import pandas as pd

    from rigidity import Hessian

    from .datasets.io import read_frames

    check(cfg)
    s = typed(cfg.experiment)
    frames = read_frames(input_path(cfg, data_key(s.datasets[0])))
    data = {k: np.array([a.info.get(k, np.nan) for a in frames], dtype=float)
            for k in ("energy", "energy_two_body", "energy_three_body", "separation")}
    data["subset"] = np.array([a.info["subset"] for a in frames])
    models = load_runs(cfg, s, frames)
    test = test_pentamers(data["subset"], models)
    curve = np.flatnonzero(data["subset"] == "dimer_curve")
    curve = curve[np.argsort(data["separation"][curve])]
    n_atoms = np.array([len(a) for a in frames])
    rows = []

    def add(**row):
        rows.append(row)

    for m in models:
        X, blocks = m["X"], m["blocks"]
        X_test = X[test]
        for k, run in enumerate(m["runs"]):
            w, b = run["w"], run["b"]
            # the CPR's H is the fit's own: X^T X + alpha I on the training rows (paper)
            h = Hessian(X.shape[1], regularizer=run["alpha"]).add(X[run["rows"]])
            cpr = h.cpr(X_test, blocks)
            common = dict(flavour=m["flavour"], training_set=k + 1, training_label=run["label"])
            for name, values in cpr.items():
                # a pentamer with no atom of >= nu neighbours has a purified nu block of zeros: its component
                # is exactly 0 whatever the weights, an infinite CPR; such pentamers are counted, not averaged
                zero = ~np.any(X_test[:, blocks[name]] != 0, axis=1)
                finite = values[~zero]
                add(**common, quantity="cpr_mean", block=name, value=float(np.mean(finite)) if finite.size else np.inf)
                add(**common, quantity="cpr_median", block=name,
                    value=float(np.median(finite)) if finite.size else np.inf)
                add(**common, quantity="cpr_zero_block_count", block=name, value=float(zero.sum()))
            pr = h.pr(X_test)
            add(**common, quantity="pr_mean", block="all", value=float(np.mean(pr)))
            # energies: per atom prediction x.w + b, per structure times N; per block x_c.w_c
            pred = (X @ w + b) * n_atoms
            parts = {name: (X[:, sl] @ w[sl]) * n_atoms for name, sl in blocks.items()}
            err = pred[test] - data["energy"][test]
            add(**common, quantity="test_rmse_per_atom", block="all",
                value=float(np.sqrt(np.mean((err / n_atoms[test]) ** 2))))
            for i in curve:
                r = float(data["separation"][i])
                add(**common, quantity="dimer_curve_total", block="all", x=r, value=float(pred[i]),
                    reference=float(data["energy"][i]))
                for name in blocks:
                    add(**common, quantity="dimer_curve_component", block=name, x=r, value=float(parts[name][i]),
                        reference=float(data["energy_two_body"][i]) if name == "nu=1" else 0.0)
            two_body = data["energy_two_body"][curve]
            add(**common, quantity="nu1_two_body_rmse", block="nu=1",
                value=float(np.sqrt(np.mean((parts["nu=1"][curve] - two_body) ** 2))))
            add(**common, quantity="dimer_total_rmse", block="all",
                value=float(np.sqrt(np.mean((pred[curve] - data["energy"][curve]) ** 2))))
            # the reference's body-order split on the test pentamers: nu=1 <-> two-body, nu=2 <-> three-body
            e2, e3 = data["energy_two_body"][test], data["energy_three_body"][test]
            if np.isfinite(e2).all() and np.isfinite(e3).all():
                for name, ref in (("nu=1", e2), ("nu=2", e3)):
                    add(**common, quantity="pentamer_block_rmse", block=name,
                        value=float(np.sqrt(np.mean((parts[name][test] - ref) ** 2))))
                rest = sum(parts[n][test] for n in blocks if n not in ("nu=1", "nu=2"))
                add(**common, quantity="pentamer_block_rmse", block="nu>=3",
                    value=float(np.sqrt(np.mean(rest ** 2))))
            if b:
                add(**common, quantity="intercept_per_atom", block="all", value=b)
    rows += cpr_ratios(rows)
    rows += pentamer_geometry([frames[i].get_positions() for i in test])
    table = pd.DataFrame(rows, columns=["flavour", "training_set", "training_label", "quantity", "block", "x", "value",
                                        "reference"])
    table["n_test"] = len(test)
    table["cpr_pentamers"] = CPR_PENTAMERS
    log.info("%d rows", len(table))
    return {"table": Table(table, reference_methods(frames))}


def plot(cfg: DictConfig):
    """Rows: self-interacting, purified. Columns: CPR per nu, total dimer curve, nu = 1 component."""
    import matplotlib.pyplot as plt

    check(cfg)
    s = typed(cfg.experiment)
    t = read_table(input_path(cfg, "table"))
    statistic = s.plot.cpr_statistic
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    t = t[t["flavour"].isin(FLAVOURS)]  # the rows of the models (not those measuring the test pentamers)
    flavours = [f for f in FLAVOURS if f in set(t["flavour"])]
    sets = sorted(t["training_set"].unique())
    labels = dict(zip(t["training_set"], t["training_label"]))
    colours = plt.cm.viridis(np.linspace(0.05, 0.85, len(sets)))
    fig, axes = plt.subplots(len(flavours), 3, figsize=(13, 3.6 * len(flavours)), squeeze=False,
                             constrained_layout=True)
    for row, flavour in enumerate(flavours):
        f = t[t["flavour"] == flavour]
        ax = axes[row, 0]
        cpr = f[f["quantity"] == f"cpr_{statistic}"]
        blocks = list(dict.fromkeys(cpr["block"]))
        width = 0.8 / len(sets)
        for j, k in enumerate(sets):
            v = cpr[cpr["training_set"] == k].set_index("block").loc[blocks, "value"]
            ax.bar(np.arange(len(blocks)) + (j - (len(sets) - 1) / 2) * width, v, width, color=colours[j],
                   label=labels[k])
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(blocks)), [b.replace("nu=", "ν = ") for b in blocks])
        ax.set_ylabel(f"CPR on test pentamers ({statistic})")
        ax.set_title(f"{flavour.replace('_', '-')} ACE: CPR per body order")
        for col, (quantity, title) in enumerate((("dimer_curve_total", "total dimer energy"),
                                                 ("dimer_curve_component", "ν = 1 component"))):
            ax = axes[row, col + 1]
            d = f[f["quantity"] == quantity]
            if quantity == "dimer_curve_component":
                d = d[d["block"] == "nu=1"]
            ref = d[d["training_set"] == sets[0]]
            refname = "reference total" if col == 0 else "reference two-body"
            ax.plot(ref["x"], ref["reference"], "--", color="0.4", lw=2, label=refname, zorder=3)
            for j, k in enumerate(sets):
                dk = d[d["training_set"] == k]
                label = labels[k]
                if col == 1:
                    rmse = f[(f["quantity"] == "nu1_two_body_rmse") & (f["training_set"] == k)]["value"].iloc[0]
                    label = f"{label} (RMSE {rmse:.3g} eV)"
                ax.plot(dk["x"], dk["value"], color=colours[j], label=label)
            lo = min(ref["reference"].min(), -1.0)
            ax.set_ylim(lo - 1.0, 2.0)
            ax.axhline(0, color="0.8", lw=0.8, zorder=0)
            ax.set_xlabel("Si-Si distance (Å)")
            ax.set_ylabel("energy (eV)")
            ax.set_title(f"{flavour.replace('_', '-')} ACE: {title}")
            if col == 1 or row == 0:
                ax.legend(fontsize=6.5)
    fig.suptitle(f"Fig. 6: body order in linear ACE. reference: {reference}; scale: {scale}", fontsize=10)
    return fig
