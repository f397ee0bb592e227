"""Figure 4 (Section IV.1): PR-guided augmentation of a bulk-only LE-ACE carbon model towards surfaces.

A linear LE-ACE model (:mod:`experiments.models.le_ace`, config/model/le_ace.yaml) is trained on total energies of
dense bulk carbon (split "train", rho > 3.0 g/cm3). The targets are surface slabs
(split "target"), which the model has never seen; each slab comes from an MD run of
its own that supplies no fitted, validation or candidate structure (as GAP-17's
``surf_amo`` are simulations separate from its bulk). Up to ``n_picks`` bulk structures
are added from the candidates (split "candidate", rho <= 3.0) by three strategies:

- ``pr_guided``: :func:`rigidity.select_greedy`, the objective the mean PR of the
  targets, H updated after every pick. The PR uses the summed features and
  H = F^T F + ``pr_regularizer`` I (paper: 1e-5), F the fitted training structures.
  The paper's F was unnormalised; here every column is divided by its RMS over the
  fitted structures, the parametrisation of the fitted model. Unscaled, the summed
  body-order-4 features reach 4e5, H's eigenvalues 4e12, and 1e-5 I no longer makes
  H positive definite in float64; scaled, the PR is that of the weights being fitted;
- ``random``: a random order of the candidates, ``n_random_seeds`` seeds;
- ``random_low_density``: a random order of the low-density bulk structures
  (``low_density`` flag, rho < 2.0, outside the training set: the paper's code draws
  them from all such bulk structures, not only the candidates).

After every addition the model is refitted (its own regulariser, chosen on the
validation set among ``model.fit``'s grid, is not the PR's) and the table records the
targets' mean PR and energy RMSE, per atom (eV/atom: every error divided by the slab's
atom count, as the paper's code divides every energy; the figure's unit) and total (eV).

Validation and draws (departure)
--------------------------------
The paper tunes its regulariser on its 800 training structures themselves and makes
one fit. Here the training split is divided into a validation set of the regulariser
(never fitted, not in H) and the fitted set proper, holding out whole MD runs where
the structures record them (``info["run"]``), so that no validation structure is a
snapshot of a fitted run. With the quick set's 20 dense runs (4 held out) the choice
of held-out runs decides one draw's result: over the 10 draws below the initial RMSE
runs from 0.50 to 3.3 eV/atom and the PR-guided RMSE after one pick from 0.21 to 1.6
(the regulariser chosen from 1e-8 to 1). Measured on 8 random hold-outs, two hold-outs
differ by a median 0.23-0.39 eV/atom at 0-2 picks, while keeping a random half of the
targets under the same hold-out moves it by 0.04-0.20 and three quarters of the
candidates by at most 0.07; from 3 picks on hold-out and targets move it alike
(~0.1 eV/atom). So the experiment is repeated over ``n_draws`` draws of the
hold-out, the folds in turn of K-fold cross-validation over the dense runs,
repeated with fresh permutations (K = the number of ``validation_fraction``-sized
blocks of runs; draw d is fold d mod K of repeat d // K; :func:`roles`), every draw
with all the targets and all the candidates. It costs no labelling (the draws share
one labelled set; GFN1-xTB labels and the Tersoff MD are the quick run's dominant
cost: a larger fit set would cost ~12 s of one core per 64-atom run of 5 labelled
snapshots, several dataset seeds ~10 min each) and ~0.5 s of analysis per draw.
At quick scale two disjoint sets of 10 draws agree within 0.04 eV/atom on the
PR-guided curve at 1, 4 and 10 picks. The draws are not independent datasets: their
spread is that of the fit's validation, with the same 20 targets, whose own sampling
is not in it. The summary table gives, for every strategy and number of picks, the
mean, standard deviation, minimum and maximum over draws of the draw's value (a
random strategy's mean over its seeds), and the paired difference from PR-guided
with the number of draws in which PR-guided is lower.

Jobs: compute_features (the summed LE-ACE features of the whole carbon set), then
analyse_fig4 (the picks and the refits of every draw: seconds) and plot_fig4. The pool of
candidates is not a Hessian shard job: the greedy selection needs the whole pool in
one process, and H0 (the fitted dense bulk, hundreds of rows) is a sub-second product.

Reference: whatever the structures record (GFN1-xTB at the default scales, a
stand-in for GAP-17's DFT, not DFT); the tables and the figure carry it.
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
#: what analyse() returns, and the file type of each (results/<scale>/tables/fig4_pr_augmentation[.<name>].<ext>)
OUTPUTS = {"table": "csv", "summary": "csv"}
#: units of the tables' quantities
UNITS = {"mean_pr": "1 (PR of the RMS-scaled summed features)", "rmse_per_atom": "eV/atom", "rmse_total": "eV"}
#: the construction, where it departs from the paper (a column of both tables)
CONSTRUCTION = ("targets: slabs from MD runs of their own; regulariser validated on held-out dense MD runs, "
                "K-fold draws of them (paper: one fit, validated on its training set); PR features RMS-scaled "
                "(paper: unscaled); errors per atom (as the paper's code)")


@dataclass
class Settings(ExperimentConfig):
    n_picks: int = MISSING  # structures added, one at a time
    n_random_seeds: int = MISSING  # seeds of each random baseline, in every draw
    random_seed: int = MISSING  # seeds the random orders (numpy SeedSequence [random_seed, draw, strategy, seed])
    # added to F^T F of the summed features for the PR (paper), not the model's regulariser
    pr_regularizer: float = MISSING
    # draws of the validation hold-out: the folds, in turn, of repeated K-fold over the dense MD runs (see roles)
    n_draws: int = MISSING


def check(cfg: DictConfig) -> None:
    """Values the schemas cannot check, of the experiment and of its model."""
    s, model = typed(cfg.experiment), typed(cfg.model)
    le_ace.check(model)
    if model.fit is None:
        raise ValueError(f"model {model.name} has no fit section: Fig 4 refits it after every addition")
    for key in ("n_picks", "n_random_seeds", "n_draws"):
        if getattr(s, key) < 1:
            raise ValueError(f"experiment.{key} must be a positive integer, got {getattr(s, key)!r}")
    if not s.pr_regularizer > 0:
        raise ValueError(f"experiment.pr_regularizer must be positive, got {s.pr_regularizer!r}")
    if len(s.features) != 1 or s.features[0].kind != "structures":
        raise ValueError(f"experiment.features must name the one summed feature set of the model, got {s.features}")


def roles(frames, validation_fraction: float, seed: int, draw: int = 0) -> dict[str, np.ndarray]:
    """Frame indices of each role in draw ``draw``: fit, validation, candidates, targets, low-density pool.

    The validation set holds out whole MD runs (``info["run"]``; a structure without one is a run of its
    own): n_val = round(``validation_fraction`` x runs) of the training split's runs (at least 1, at most
    all but one). Repeat r permutes the runs with numpy's ``default_rng([seed, r])`` and cuts the
    permutation into K = runs // n_val blocks of n_val runs; draw d holds out block d mod K of repeat
    d // K. Draws 0 ... K-1 thus validate on every run (but a remainder of fewer than n_val) once.
    Candidates, targets and the low-density pool are the same in every draw.
    """
    if draw < 0:
        raise ValueError(f"draw must be a non-negative integer, got {draw!r}")
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
    n_folds = len(groups) // n_val
    repeat, fold = divmod(draw, n_folds)
    held = np.random.default_rng([seed, repeat]).permutation(groups)[fold * n_val:(fold + 1) * n_val]
    is_val = np.isin(group, held)
    out["validation"], out["fit"] = train[is_val], train[~is_val]
    return out


# ----------------------------------------------------------------------------------------------
# analysis


def pick_orders(s: Settings, Xs: np.ndarray, rows: dict[str, np.ndarray], h0, draw: int = 0
                ) -> tuple[dict[tuple[str, int], np.ndarray], np.ndarray]:
    """Rows added by each (strategy, seed), in order (greedy by PR, and random orders); the greedy objective.

    ``Xs``: the scaled features of every row; ``rows``: the rows of each role of this draw; ``h0``: the
    Hessian of the fitted rows. The random orders of draw ``d`` come from numpy's
    ``default_rng([random_seed, d, strategy, seed])``.
    """
    from rigidity import select_greedy

    cand, targets, low = rows["candidates"], rows["targets"], rows["low_density"]
    n = s.n_picks
    if n > len(cand):
        log.warning("n_picks = %d > %d candidates: picking all of them", n, len(cand))
    greedy = select_greedy(h0, Xs[targets], Xs[cand], min(n, len(cand)), objective="mean_pr")
    orders = {("pr_guided", 0): cand[greedy.indices]}
    for j, (name, pool) in enumerate((("random", cand), ("random_low_density", low))):
        for seed in range(s.n_random_seeds):
            rng = np.random.default_rng([s.random_seed, draw, j, seed])
            orders[(name, seed)] = rng.permutation(pool)[:n]
    return orders, greedy.objective


def inputs(cfg: DictConfig, s: Settings) -> dict:
    """The structures and their features, checked against each other and the composed model; roles by draw.

    ``draws[d]``: the rows of each role (fit, validation, candidates, targets, low_density) in draw d.
    """
    from .datasets.io import read_frames

    need = s.features[0]
    frames = read_frames(input_path(cfg, data_key(need.dataset)))
    fs = load_features(input_path(cfg, features_key(need.model, need.dataset, need.kind)), frames)
    if fs.meta["model_config"]["descriptor"] != to_plain(cfg.model.descriptor):
        raise ValueError(f"the features of {need.model} were computed with descriptor "
                         f"{fs.meta['model_config']['descriptor']}, "
                         f"the composed model has {to_plain(cfg.model.descriptor)}: rerun compute_features")
    model = typed(cfg.model)
    by_draw = [roles(frames, model.fit.validation_fraction, model.fit.validation_seed, d) for d in range(s.n_draws)]
    used = np.unique(np.concatenate(list(by_draw[0].values())))  # every draw divides the same structures
    row = np.full(len(frames), -1)
    row[used] = np.arange(len(used))
    return dict(
        X=fs.X[used], frame_index=used,
        energy=np.array([float(frames[i].info["energy"]) for i in used]),
        n_atoms=np.array([len(frames[i]) for i in used]),
        density=np.array([float(frames[i].info.get("density", np.nan)) for i in used]),
        run=np.array([frames[i].info.get("run", -1 - i) for i in used]),
        reference_method=fs.meta["reference_method"],
        draws=[{k: row[v] for k, v in r.items()} for r in by_draw],
    )


def curves(s: Settings, data: dict, rows: dict[str, np.ndarray], grid: np.ndarray, draw: int = 0) -> list[dict]:
    """Targets' mean PR and energy RMSE after each added structure, for every strategy and seed, one draw.

    ``rows``: the rows (of ``data``) of each role: fit, validation, candidates, targets, low_density.
    """
    from rigidity import Hessian

    X, energy, n_atoms, reg = data["X"], data["energy"], data["n_atoms"], s.pr_regularizer
    fit, val, targets = rows["fit"], rows["validation"], rows["targets"]
    scales = le_ace.column_scales(X[fit])
    Xs = X / scales  # the model's parametrisation: the PR of the weights that are fitted
    h0 = Hessian(X.shape[1], regularizer=reg).add(Xs[fit])
    orders, greedy_objective = pick_orders(s, Xs, rows, h0, draw)
    records = []
    for (strategy, seed), order in orders.items():
        for k in range(len(order) + 1):
            added_rows = np.concatenate([fit, order[:k]])
            pr = Hessian(X.shape[1], regularizer=reg).add(Xs[added_rows]).pr(Xs[targets])
            m = le_ace.fit_validated(X[added_rows], energy[added_rows], n_atoms[added_rows], X[val], energy[val],
                                     n_atoms[val], grid, scales)
            err = m.predict(X[targets], n_atoms[targets]) - energy[targets]
            added = order[k - 1] if k else -1
            records.append(dict(
                draw=draw, strategy=strategy, seed=seed, n_added=k,
                added_frame=int(data["frame_index"][added]) if k else -1,
                added_density=float(data["density"][added]) if k else np.nan,
                mean_pr=float(np.mean(pr)), min_pr=float(np.min(pr)),
                greedy_objective=float(greedy_objective[k - 1]) if strategy == "pr_guided" and k else np.nan,
                rmse_total=float(np.sqrt(np.mean(err**2))),
                rmse_per_atom=float(np.sqrt(np.mean((err / n_atoms[targets]) ** 2))),
                alpha=m.alpha, validation_rmse=m.validation_rmse,
                n_fit=len(fit), n_validation=len(val), n_targets=len(targets),
                n_candidates=len(rows["candidates"]), n_low_density=len(rows["low_density"]),
            ))
    return records


def analyse(cfg: DictConfig) -> dict[str, Table]:
    """Targets' mean PR and energy RMSE after each added structure, for every draw, strategy and seed."""
    import pandas as pd

    check(cfg)
    s, model = typed(cfg.experiment), typed(cfg.model)
    data = inputs(cfg, s)
    grid = le_ace.alphas(model.fit)
    table = pd.DataFrame([rec for d, rows in enumerate(data["draws"]) for rec in curves(s, data, rows, grid, d)])
    for column in ("rmse_per_atom", "rmse_total"):
        table[f"{column}_unit"] = UNITS[column]
    table["construction"] = CONSTRUCTION
    stats = summary(table)
    g = stats[(stats["quantity"] == "rmse_per_atom") & (stats["strategy"] == "pr_guided")]
    log.info("PR-guided: target RMSE %s eV/atom (mean over %d draws), std %s", np.round(g["mean"].to_numpy(), 3),
             s.n_draws, np.round(g["std"].to_numpy(), 3))
    return {"table": Table(table, data["reference_method"]), "summary": Table(stats, data["reference_method"])}


def summary(table) -> pd.DataFrame:  # noqa: F821
    """Mean and spread over draws, for every quantity, strategy and number of added structures.

    A draw's value is its PR-guided curve, or a random strategy's mean over its seeds; ``mean``, ``std``
    (ddof 1; NaN for one draw), ``min`` and ``max`` are over the draws, ``seed_std`` the mean over draws of
    the standard deviation over seeds. Rows ``<strategy> - pr_guided`` are the paired differences of the
    draws' values (the same fit, validation and targets), ``n_pr_lower`` the draws where PR-guided is lower.
    """
    import pandas as pd

    rows = []
    for quantity in ("mean_pr", "rmse_per_atom", "rmse_total"):
        per_draw = table.groupby(["strategy", "n_added", "draw"])[quantity].agg(["mean", "std"]).reset_index()
        for (strategy, n), h in per_draw.groupby(["strategy", "n_added"]):
            rows.append(dict(quantity=quantity, unit=UNITS[quantity], strategy=strategy, n_added=int(n),
                             n_draws=len(h), mean=h["mean"].mean(), std=h["mean"].std(ddof=1),
                             min=h["mean"].min(), max=h["mean"].max(), seed_std=h["std"].mean()))
        wide = per_draw.pivot_table(index=["n_added", "draw"], columns="strategy", values="mean")
        if "pr_guided" not in wide.columns:
            continue
        for strategy in (c for c in STRATEGIES if c != "pr_guided" and c in wide.columns):
            for n, h in wide.groupby(level="n_added"):
                diff = (h[strategy] - h["pr_guided"]).dropna()
                rows.append(dict(quantity=quantity, unit=UNITS[quantity], strategy=f"{strategy} - pr_guided",
                                 n_added=int(n), n_draws=len(diff), mean=diff.mean(), std=diff.std(ddof=1),
                                 min=diff.min(), max=diff.max(), n_pr_lower=int((diff > 0).sum())))
    out = pd.DataFrame(rows)
    out["construction"] = CONSTRUCTION
    return out


def plot(cfg: DictConfig):
    """(a) mean PR of the targets, (b) their energy RMSE per atom, (c) its paired gap to PR-guided.

    Every curve is the mean over the draws of the validation hold-out (a random strategy's value in a
    draw: its mean over seeds), the band one standard deviation over the draws. The paper's errors are
    per atom (its code divides every energy by the atom count: 0.297 eV/atom at the start, 0.107 at
    best); so are these, in eV/atom (the table also has the total-energy RMSE in eV).
    """
    import matplotlib.pyplot as plt

    t = read_table(input_path(cfg, "table"))
    stats = read_table(input_path(cfg, "summary"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    n_draws = int(t["draw"].nunique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    panels = ((axes[0], "mean_pr", STRATEGIES, "mean PR of the surface targets"),
              (axes[1], "rmse_per_atom", STRATEGIES, "energy RMSE on the surface targets (eV/atom)"),
              (axes[2], "rmse_per_atom", [f"{k} - pr_guided" for k in STRATEGIES[1:]],
               "RMSE minus PR-guided's, same draw (eV/atom)"))
    for ax, quantity, strategies, ylabel in panels:
        for strategy in strategies:
            st = stats[(stats["quantity"] == quantity) & (stats["strategy"] == strategy)].sort_values("n_added")
            if st.empty:
                continue
            base = strategy.split(" - ")[0]
            seeds = t[t["strategy"] == base]["seed"].nunique()
            label = LABELS[base] + (f" ({seeds} seeds per draw)" if seeds > 1 else "")
            n, mean, std = st["n_added"].to_numpy(), st["mean"].to_numpy(), st["std"].fillna(0.0).to_numpy()
            ax.plot(n, mean, "o-", color=COLOURS[base], label=label, ms=4)
            if n_draws > 1:
                low = np.maximum(mean - std, mean / 10) if quantity == "mean_pr" else mean - std
                ax.fill_between(n, low, mean + std, color=COLOURS[base], alpha=0.15, lw=0)
        ax.set_xlabel("structures added to the training set")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(0, int(t["n_added"].max()) + 1))
    axes[0].set_yscale("log")
    axes[2].axhline(0.0, color="0.5", lw=0.8)
    axes[0].set_title("(a) PR of the targets")
    axes[1].set_title("(b) energy RMSE of the targets, per atom")
    axes[2].set_title("(c) gap to PR-guided (> 0: PR-guided better)")
    band = f"mean of {n_draws} validation draws, shaded: ± 1 s.d. over draws" if n_draws > 1 else "one draw"
    axes[1].legend(fontsize=8, title=band, title_fontsize=7)
    n_fit, n_val, n_targets = (int(t[c].iloc[0]) for c in ("n_fit", "n_validation", "n_targets"))
    fig.suptitle(f"Fig. 4: PR-guided augmentation of a bulk-only LE-ACE carbon model ({n_fit} fitted + {n_val} "
                 f"validation dense bulk per draw, {n_targets} surface targets from MD runs of their own). "
                 f"Reference: {reference}; scale: {scale}", fontsize=9)
    return fig
