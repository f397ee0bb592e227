"""Figure 4 (Section IV.1): PR-guided augmentation of a bulk-only LE-ACE carbon model towards surfaces.

A linear LE-ACE model (:mod:`experiments.models.le_ace`, config/model/le_ace.yaml) is trained on total energies of
dense bulk carbon (split "train", rho > 3.0 g/cm3). The targets are surface slabs
(split "target"), which the model has never seen. Up to ``n_picks`` bulk structures
are added from the candidates (split "candidate", rho <= 3.0) by three strategies:

- ``pr_guided``: :func:`rigidity.select_greedy`, the objective the mean PR of the
  targets, H updated after every pick. The PR uses the summed features and
  H = F^T F + ``pr_regularizer`` I (paper: 1e-5), F the fitted training structures.
  The paper's F was unnormalised; here every column is divided by its RMS over the
  initial training set, the parametrisation of the fitted model. Unscaled, the summed
  body-order-4 features reach 4e5, H's eigenvalues 4e12, and 1e-5 I no longer makes
  H positive definite in float64; scaled, the PR is that of the weights being fitted;
- ``random``: a random order of the candidates, ``n_random_seeds`` seeds;
- ``random_low_density``: a random order of the low-density bulk structures
  (``low_density`` flag, rho < 2.0, outside the training set: the paper's code draws
  them from all such bulk structures, not only the candidates).

After every addition the model is refitted (its own regulariser, chosen on the
validation set among ``model.fit``'s grid, is not the PR's) and the table records the targets' mean PR and
energy RMSE (total, eV per structure, and per atom).

The training split is divided once: ``model.fit.validation_fraction`` of it (seeded) is the
validation set of the regulariser, never fitted and not in H; the rest is the
training set proper. Where the structures record their MD run (``info["run"]``, the
generated set), whole runs are held out, so that no validation structure is a
snapshot of a fitted run. Splits come from the dataset (config/dataset/carbon.yaml).

Jobs: compute_features (the summed LE-ACE features of the whole carbon set), then
analyse_fig4 (the picks and the refits: seconds) and plot_fig4. The pool of
candidates is not a Hessian shard job: the greedy selection needs the whole pool in
one process, and H0 (the fitted dense bulk, hundreds of rows) is a sub-second product.

Reference: whatever the structures record (GFN1-xTB at the default scales, a
stand-in for GAP-17's DFT, not DFT); the table and the figure carry it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING, DictConfig

from ._results import load_features
from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig, to_plain
from .layout import data_key, features_key
from .models import le_ace

log = logging.getLogger(__name__)

STRATEGIES = ("pr_guided", "random", "random_low_density")
LABELS = {"pr_guided": "PR-guided", "random": "random", "random_low_density": "random, low density (ρ < 2.0)"}
COLOURS = {"pr_guided": "C3", "random": "C0", "random_low_density": "C2"}


@dataclass
class Settings(ExperimentConfig):
    n_picks: int = MISSING  # structures added, one at a time
    n_random_seeds: int = MISSING  # seeds of each random baseline
    random_seed: int = MISSING  # seeds the random orders (numpy SeedSequence [random_seed, strategy, seed])
    # added to F^T F of the summed features for the PR (paper), not the model's regulariser
    pr_regularizer: float = MISSING


def check(cfg: DictConfig) -> None:
    """Values the schemas cannot check, of the experiment and of its model."""
    s, model = typed(cfg.experiment), typed(cfg.model)
    le_ace.check(model)
    if model.fit is None:
        raise ValueError(f"model {model.name} has no fit section: Fig 4 refits it after every addition")
    for key in ("n_picks", "n_random_seeds"):
        if getattr(s, key) < 1:
            raise ValueError(f"experiment.{key} must be a positive integer, got {getattr(s, key)!r}")
    if not s.pr_regularizer > 0:
        raise ValueError(f"experiment.pr_regularizer must be positive, got {s.pr_regularizer!r}")
    if len(s.features) != 1 or s.features[0].kind != "structures":
        raise ValueError(f"experiment.features must name the one summed feature set of the model, got {s.features}")


def roles(frames, validation_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Frame indices of each role: fit, validation, candidates, targets, low-density pool."""
    split = np.array([str(a.info.get("split", "unused")) for a in frames])
    subset = np.array([str(a.info.get("subset", "")) for a in frames])
    low = np.array([bool(a.info.get("low_density", False)) for a in frames])
    train = np.flatnonzero(split == "train")
    out = {"candidates": np.flatnonzero(split == "candidate"), "targets": np.flatnonzero(split == "target"),
           "low_density": np.flatnonzero(low & (subset == "bulk") & (split != "train"))}
    if len(train) < 2:
        raise ValueError(f"the carbon dataset has {len(train)} 'train' structures: "
                         f"a fit and its validation need at least 2")
    for name, idx in out.items():
        if len(idx) == 0:
            raise ValueError(f"the carbon dataset has no {name} "
                             f"(splits: {sorted(set(split))}); see config/dataset/carbon.yaml")
    # hold out whole MD runs where the structures record them: snapshots of one run are correlated, and a
    # validation set sharing runs with the fit would favour the smallest regulariser
    group = np.array([a.info.get("run", -1 - i) for i, a in enumerate(frames)])[train]
    groups = np.unique(group)
    if len(groups) < 2:
        raise ValueError(f"the {len(train)} 'train' structures come from {len(groups)} MD run: "
                         f"a validation set needs 2")
    n_val = min(len(groups) - 1, max(1, int(round(validation_fraction * len(groups)))))
    held = np.random.default_rng(seed).permutation(groups)[:n_val]
    is_val = np.isin(group, held)
    out["validation"], out["fit"] = train[is_val], train[~is_val]
    return out


# ----------------------------------------------------------------------------------------------
# analysis


def pick_orders(s: Settings, data: dict, h0) -> tuple[dict[tuple[str, int], np.ndarray], np.ndarray]:
    """Rows added by each (strategy, seed), in order (greedy by PR, and random orders); the greedy objective."""
    from rigidity import select_greedy

    X, cand, targets, low = data["X"], data["rows_candidates"], data["rows_targets"], data["rows_low_density"]
    n = s.n_picks
    if n > len(cand):
        log.warning("n_picks = %d > %d candidates: picking all of them", n, len(cand))
    greedy = select_greedy(h0, X[targets], X[cand], min(n, len(cand)), objective="mean_pr")
    orders = {("pr_guided", 0): cand[greedy.indices]}
    for j, (name, pool) in enumerate((("random", cand), ("random_low_density", low))):
        for seed in range(s.n_random_seeds):
            rng = np.random.default_rng([s.random_seed, j, seed])
            orders[(name, seed)] = rng.permutation(pool)[:n]
    return orders, greedy.objective


def inputs(cfg: DictConfig, s: Settings) -> dict:
    """The structures and their features, checked against each other and the composed model, by role."""
    from .datasets.io import read_frames

    need = s.features[0]
    frames = read_frames(input_path(cfg, data_key(need.dataset)))
    fs = load_features(input_path(cfg, features_key(need.model, need.dataset, need.kind)), frames)
    if fs.meta["model_config"]["descriptor"] != to_plain(cfg.model.descriptor):
        raise ValueError(f"the features of {need.model} were computed with descriptor "
                         f"{fs.meta['model_config']['descriptor']}, "
                         f"the composed model has {to_plain(cfg.model.descriptor)}: rerun compute_features")
    model = typed(cfg.model)
    r = roles(frames, model.fit.validation_fraction, model.fit.validation_seed)
    used = np.unique(np.concatenate(list(r.values())))
    row = {int(f): k for k, f in enumerate(used)}
    return dict(
        X=fs.X[used], frame_index=used,
        energy=np.array([float(frames[i].info["energy"]) for i in used]),
        n_atoms=np.array([len(frames[i]) for i in used]),
        density=np.array([float(frames[i].info.get("density", np.nan)) for i in used]),
        reference_method=fs.meta["reference_method"],
        **{f"rows_{k}": np.array([row[int(f)] for f in v], dtype=int) for k, v in r.items()},
    )


def analyse(cfg: DictConfig) -> dict[str, Table]:
    """Targets' mean PR and energy RMSE after each added structure, for every strategy and seed."""
    import pandas as pd

    from rigidity import Hessian

    check(cfg)
    s, model = typed(cfg.experiment), typed(cfg.model)
    data = inputs(cfg, s)
    X, energy, n_atoms = data["X"], data["energy"], data["n_atoms"]
    fit, val, targets = data["rows_fit"], data["rows_validation"], data["rows_targets"]
    reg, grid, scales = s.pr_regularizer, le_ace.alphas(model.fit), le_ace.column_scales(X[fit])
    Xs = X / scales  # the model's parametrisation: the PR of the weights that are fitted
    h0 = Hessian(X.shape[1], regularizer=reg).add(Xs[fit])
    orders, greedy_objective = pick_orders(s, dict(data, X=Xs), h0)
    records = []
    for (strategy, seed), order in orders.items():
        for k in range(len(order) + 1):
            rows = np.concatenate([fit, order[:k]])
            pr = Hessian(X.shape[1], regularizer=reg).add(Xs[rows]).pr(Xs[targets])
            m = le_ace.fit_validated(X[rows], energy[rows], n_atoms[rows], X[val], energy[val], n_atoms[val], grid,
                                     scales)
            err = m.predict(X[targets], n_atoms[targets]) - energy[targets]
            added = order[k - 1] if k else -1
            records.append(dict(
                strategy=strategy, seed=seed, n_added=k,
                added_frame=int(data["frame_index"][added]) if k else -1,
                added_density=float(data["density"][added]) if k else np.nan,
                mean_pr=float(np.mean(pr)), min_pr=float(np.min(pr)),
                greedy_objective=float(greedy_objective[k - 1]) if strategy == "pr_guided" and k else np.nan,
                rmse_total=float(np.sqrt(np.mean(err**2))),
                rmse_per_atom=float(np.sqrt(np.mean((err / n_atoms[targets]) ** 2))),
                alpha=m.alpha, validation_rmse=m.validation_rmse,
            ))
    table = pd.DataFrame(records)
    table["n_fit"], table["n_validation"], table["n_targets"] = len(fit), len(val), len(targets)
    table["n_candidates"], table["n_low_density"] = len(data["rows_candidates"]), len(data["rows_low_density"])
    g = table[table["strategy"] == "pr_guided"].set_index("n_added")
    log.info("PR-guided: target RMSE %s eV; picks at densities %s",
             np.round(g["rmse_total"].to_numpy(), 3), np.round(g["added_density"].to_numpy()[1:], 2))
    return {"table": Table(table, data["reference_method"])}


def summary(table) -> pd.DataFrame:  # noqa: F821
    """Mean and spread over seeds of every strategy at every number of added structures."""
    return (table.groupby(["strategy", "n_added"])[["mean_pr", "rmse_total", "rmse_per_atom"]]
            .agg(["mean", "std", "min", "max"]))


def plot(cfg: DictConfig):
    """(a) mean PR of the targets and (b) their energy RMSE per atom against the number of added structures.

    The paper's Fig. 4b gives the RMSE in eV (0.297 eV less after one pick, 0.107 eV at best); with
    64-216-atom slabs, a total-energy error that small would be ~1 meV/atom for a bulk-only model's
    extrapolation to surfaces, so the panel shows the per-atom RMSE (the table has both).
    """
    import matplotlib.pyplot as plt

    t = read_table(input_path(cfg, "table"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    stats = summary(t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, quantity, ylabel in ((axes[0], "mean_pr", "mean PR of the surface targets"),
                                 (axes[1], "rmse_per_atom", "energy RMSE on the surface targets (eV/atom)")):
        for strategy in STRATEGIES:
            if strategy not in stats.index.get_level_values(0):
                continue
            st = stats.loc[strategy][quantity]
            n = st.index.to_numpy()
            seeds = t[t["strategy"] == strategy]["seed"].nunique()
            label = LABELS[strategy] + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
            ax.plot(n, st["mean"], "o-", color=COLOURS[strategy], label=label, ms=4)
            if seeds > 1:
                ax.fill_between(n, st["min"], st["max"], color=COLOURS[strategy], alpha=0.15, lw=0)
        ax.set_xlabel("structures added to the training set")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(0, int(t["n_added"].max()) + 1))
    axes[0].set_yscale("log")
    axes[0].set_title("(a) PR of the targets")
    axes[1].set_title("(b) energy RMSE of the targets")
    axes[1].legend(fontsize=8, title="shaded: range over seeds", title_fontsize=7)
    n_fit, n_targets = int(t["n_fit"].iloc[0]), int(t["n_targets"].iloc[0])
    fig.suptitle(f"Fig. 4: PR-guided augmentation of a bulk-only LE-ACE carbon model ({n_fit} dense bulk, "
                 f"{n_targets} surface targets). Reference: {reference}; scale: {scale}", fontsize=9)
    return fig
