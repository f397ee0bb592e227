"""Figure 2 (Section III): committee variance of local energies against the last-layer LPR.

For each network of experiment.models the first run is the main model (Fig 1's) and the
others its committee: the paper's ten models, member k trained on the main training set
without its block k of 10 (run ``<main>-x<k>of10``; the paper's
``frames[:1000 k] + frames[1000 (k + 1):10000]``, so the left-out blocks are disjoint and
cover the set), each its own train_model job. The analysis computes, for every atom of the
test structures,

- the last-layer LPR of the main model (H as in Fig 1: the paper's energy rows of its
  training structures, plus sigma^2), normalised by its largest value on the test set;
- the local energy phi_i . w + c_i of every committee member (each member's own last
  layer; they sum to its energy of the structure), and their variance across the
  committee (ddof = 1);

and writes them per atom (``points``), and in ``table`` the means of both over bins of
``per_bin`` environments of similar LPR (the paper: 100) and the Spearman correlation of
LPR and variance (the paper: "a clear inverse trend" for all three models; no number).
References as Fig 1's: QM9 DFT, GFN2-xTB Si clusters (not DFT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING, DictConfig

from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .fig1_uncertainty_vs_error import LABELS, binned, plain_log_ticks, spearman
from .layout import data_key, model_key
from .runs import parse_run

log = logging.getLogger(__name__)

OUTPUTS = {"table": "csv", "points": "csv"}


@dataclass
class Settings(ExperimentConfig):
    per_bin: int = MISSING  # local environments averaged per point (paper: 100)


# -- the statistics of the figure ---------------------------------------------------------------------------------
def local_energies(ll, frames, batch_size: int = 16):
    """(n_atoms,) each atom's energy as the model's last layer writes it, phi_i . w + c_i (summing to the model's
    energy of each structure), and the structure of each atom."""
    out = ll.compute(frames, batch_size=batch_size)
    return out["phi"] @ ll.weights + out["constants"], out["structure"]


def committee_variance(local: list[np.ndarray]) -> np.ndarray:
    """Variance over committee members (unbiased, ddof = 1) of each atom's local energy; members x atoms."""
    stack = np.asarray(local, dtype=float)
    if stack.ndim != 2 or stack.shape[0] < 2:
        raise ValueError(f"a committee needs at least 2 members' local energies of the same atoms, got {stack.shape}")
    return stack.var(axis=0, ddof=1)


def normalised_lpr(lpr: np.ndarray) -> np.ndarray:
    """LPRs divided by their largest value on the test set (the figure's x axis)."""
    lpr = np.asarray(lpr, dtype=float)
    if lpr.size == 0 or not np.all(lpr > 0):
        raise ValueError("LPRs must be a non-empty set of positive numbers")
    return lpr / lpr.max()


def committee(runs) -> tuple[str, list[str]]:
    """The main run (the first) and its members (the others: ``<main>-x<k>of<K>``), checked."""
    import re

    main, members = runs[0], list(runs[1:])
    head = parse_run(main)
    if head.left_out is not None:
        raise ValueError(f"experiment.models: the first run is the main model; {main!r} leaves a block out")
    if len(members) < 2:
        raise ValueError(f"experiment.models: a committee needs at least 2 members besides {main!r}, got {members}")
    blocks = set()
    for run in members:
        key = parse_run(run)
        if key.left_out is None or re.sub(r"-x[0-9]+of[0-9]+", "", key.selection) != head.selection \
                or key.seed != head.seed:
            raise ValueError(f"experiment.models: committee member {run!r} must be {head.selection}-x<k>of<K> "
                             f"(the main training set without its block k of K) with the main run's seed")
        blocks.add(key.left_out[1])
    if len(blocks) != 1:
        raise ValueError(f"experiment.models: the members of {main!r} cut its training set into {sorted(blocks)} "
                         "blocks: one K for all, so that the left-out blocks are disjoint")
    return main, members


def check(cfg: DictConfig) -> None:
    s = typed(cfg.experiment)
    if s.per_bin < 1:
        raise ValueError(f"experiment.per_bin must be >= 1 local environments, got {s.per_bin}")
    for need in s.models:
        committee(list(need.runs))


# -- analysis -----------------------------------------------------------------------------------------------------
def analyse(cfg: DictConfig) -> dict[str, Table]:
    """Main model's LPR and the committee's variance of local energies on every test atom, per model."""
    import pandas as pd

    from ._results import reference_methods
    from .datasets.io import read_frames
    from .models._network import fitted_llpr, predictions, subset, trained

    check(cfg)
    s = typed(cfg.experiment)
    points, rows, references = [], [], []
    for need in s.models:
        frames = read_frames(input_path(cfg, data_key(need.dataset)), energy_key="energy", forces_key=None)
        test = subset(frames, "test")
        references.append(reference_methods(test))
        main, members = committee(list(need.runs))
        net = trained(input_path(cfg, model_key(need.model, need.dataset, main)), frames)
        p = predictions(fitted_llpr(net, frames), test, net.config.rigidity.reduce)
        local, sizes = [], []
        for run in members:
            member = trained(input_path(cfg, model_key(need.model, need.dataset, run)), frames)
            left_out = sorted(set(net.rows) - set(member.rows))
            if set(member.rows) - set(net.rows) or not left_out:
                raise ValueError(f"committee member {run} of {need.model}: its training set must be the main "
                                 f"model's ({main}) less a block")
            local.append(local_energies(member.last_layer(), test)[0])
            sizes.append(len(member.rows))
        variance = committee_variance(local)
        lpr = normalised_lpr(p["lpr"])
        test_rows = np.array([i for i, a in enumerate(frames) if a.info.get("subset") == "test"])
        common = dict(model=need.model, dataset=need.dataset, dataset_reference=references[-1], run=main,
                      n_members=len(members))
        points.append(pd.DataFrame(dict(**common, structure=test_rows[p["structure"]], species=p["numbers"],
                                        lpr=p["lpr"], lpr_normalised=lpr, local_energy=p["local"],
                                        committee_variance=variance)))
        rho = spearman(lpr, variance)
        rows.append(dict(**common, quantity="spearman_lpr_variance", value=rho, unit="1"))
        rows.append(dict(**common, quantity="n_atoms", value=float(len(lpr)), unit="1"))
        rows.append(dict(**common, quantity="n_train", value=float(len(net.rows)), unit="1"))
        rows.append(dict(**common, quantity="n_train_member", value=float(np.mean(sizes)), unit="1"))
        if s.per_bin <= len(lpr):
            x, y = binned(lpr, variance, s.per_bin)
            for b, (xb, yb) in enumerate(zip(x, y)):
                rows.append(dict(**common, quantity="bin_variance", bin=b, lpr_normalised=xb, value=yb,
                                 per_bin=s.per_bin, unit="eV^2"))
        log.info("%s on %s: %d members, %d test atoms, Spearman(LPR, variance) %.3f", need.model, need.dataset,
                 len(members), len(lpr), rho)
    table = pd.DataFrame(rows, columns=["model", "dataset", "dataset_reference", "run", "n_members", "quantity",
                                        "bin", "per_bin", "lpr_normalised", "value", "unit"])
    for column in ("bin", "per_bin"):
        table[column] = table[column].astype("Int64")
    reference = " + ".join(sorted(set(references)))
    return {"table": Table(table, reference), "points": Table(pd.concat(points, ignore_index=True), reference)}


# -- figure -------------------------------------------------------------------------------------------------------
def plot(cfg: DictConfig):
    """Committee variance of local energies against the normalised LPR (every atom faint, bin means bold)."""
    import matplotlib.pyplot as plt

    t, pts = read_table(input_path(cfg, "table")), read_table(input_path(cfg, "points"))
    models = list(dict.fromkeys(pts["model"]))
    scale = t["scale"].iloc[0]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4.2), constrained_layout=True,
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        p, m = pts[pts["model"] == model], t[t["model"] == model]
        reference = p["dataset_reference"].iloc[0]
        note = "" if "b3lyp" in reference.lower() or "dft" in reference.lower() else " (not DFT)"
        ax.scatter(p["lpr_normalised"], p["committee_variance"], s=3, lw=0, alpha=0.25, color="0.5",
                   label="test atoms")
        b = m[m["quantity"] == "bin_variance"]
        per_bin = int(b["per_bin"].iloc[0]) if len(b) else 0
        ax.plot(b["lpr_normalised"], b["value"], "o-", color="tab:purple", ms=4, label=f"means of {per_bin}")
        rho = float(m[m["quantity"] == "spearman_lpr_variance"]["value"].iloc[0])
        ax.set(xscale="log", yscale="log", xlabel="last-layer LPR / max on the test set",
               ylabel="committee variance of local energies, eV^2")
        ax.set_title(f"{LABELS.get(model, model)} on {p['dataset'].iloc[0]}: {int(p['n_members'].iloc[0])} "
                     f"members\nSpearman {rho:.2f}; reference: {reference}{note}", fontsize=9)
        ax.legend(fontsize=7)
        plain_log_ticks(ax)
    fig.suptitle(f"Fig. 2: variance of local energies across a committee against the last-layer LPR; scale: {scale}",
                 fontsize=10)
    return fig
