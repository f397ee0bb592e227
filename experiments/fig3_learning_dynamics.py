"""Figure 3 (Section III): LPR distributions of test molecules along training and against training-set size.

SOAP-BPNN on QM9 (experiment.models: one network, several runs). The first run is the
main model, Fig 1's, trained with checkpoints (model.checkpoint_epochs for the runs of
model.checkpoint_runs: the models at those metatrain epochs, 0-based); the others are
trained on the first n training molecules with the same validation set. For the atoms of
the first ``n_test_molecules`` test molecules the analysis computes the last-layer LPR
(H as Fig 1's: energy rows of the structures that model was trained on, plus sigma^2)

- (a) of every checkpoint, H over the main training set with that checkpoint's features;
- (b) of every smaller model, H over its own training set;

and, for each, the paper's average normalised relative LPR difference from the main
(final) model (:func:`normalised_relative_difference`): the paper's are below 5 % by
epoch 120 and below 1 % by epoch 160 of 2,500 (a), and 41, 52, 32 and 55 % for 500, 1000,
2233 and 5000 training molecules (b). ``points`` has every atom's LPR, ``table`` the
differences. Reference: QM9's B3LYP (DFT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING, DictConfig

from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .layout import data_key, model_key

log = logging.getLogger(__name__)

OUTPUTS = {"table": "csv", "points": "csv"}

#: the paper's average normalised relative LPR differences from the 10,000-molecule model (Sec. III.2, panel b)
PAPER_SIZE_DIFFERENCES = {500: 0.41, 1000: 0.52, 2233: 0.32, 5000: 0.55}


@dataclass
class Settings(ExperimentConfig):
    n_test_molecules: int = MISSING  # molecules whose atom LPRs are shown


# -- the statistics of the figure ---------------------------------------------------------------------------------
def normalised_relative_difference(lpr, reference) -> float:
    """The paper's average normalised relative LPR difference of a model from the reference (final) model.

    Each model's LPRs are divided by its LPR of environment j, the reference model's most
    rigid environment ("normalized by LPR_j of each model, where j is the highest LPR
    environment for the original model", Sec. III.2); the difference from the reference
    is then taken relative to the reference's normalised LPR and averaged over environments.
    A model whose LPRs are the reference's times a constant has difference 0.
    """
    lpr, reference = np.asarray(lpr, dtype=float), np.asarray(reference, dtype=float)
    if lpr.shape != reference.shape or lpr.ndim != 1 or lpr.size == 0:
        raise ValueError(f"LPRs {lpr.shape} and reference {reference.shape} must be 1-D, non-empty, of one shape")
    if not (np.all(lpr > 0) and np.all(reference > 0)):
        raise ValueError("LPRs must be positive")
    j = int(np.argmax(reference))
    a, b = lpr / lpr[j], reference / reference[j]
    return float(np.mean(np.abs(a - b) / b))


def check(cfg: DictConfig) -> None:
    s = typed(cfg.experiment)
    if len(s.models) != 1 or len(s.models[0].runs) < 1:
        raise ValueError("experiment.models must name one network and its runs (the main model first)")
    if s.n_test_molecules < 1:
        raise ValueError(f"experiment.n_test_molecules must be >= 1, got {s.n_test_molecules}")


# -- analysis -----------------------------------------------------------------------------------------------------
def analyse(cfg: DictConfig) -> dict[str, Table]:
    """LPRs of the test atoms for the main model's checkpoints and for the models of smaller training sets."""
    import pandas as pd

    from ._results import reference_methods
    from .datasets.io import read_frames
    from .models._network import fitted_llpr, predictions, subset, trained

    check(cfg)
    s = typed(cfg.experiment)
    need = s.models[0]
    frames = read_frames(input_path(cfg, data_key(need.dataset)), energy_key="energy", forces_key=None)
    test = subset(frames, "test", s.n_test_molecules)
    main = trained(input_path(cfg, model_key(need.model, need.dataset, need.runs[0])), frames)
    reduce = main.config.rigidity.reduce
    checkpoints = main.meta.get("checkpoints") or []
    if not checkpoints:
        raise ValueError(f"{main.path}: run {need.runs[0]} kept no checkpoints; panel (a) needs them: add it to "
                         "model.checkpoint_runs (and epochs to model.checkpoint_epochs)")
    final = predictions(fitted_llpr(main, frames), test, reduce)
    order = np.argsort(final["lpr"], kind="stable")  # atoms ordered by the final model's LPR
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    points, rows = [], []

    def add(panel, label, epoch, n_train, lpr):
        points.append(pd.DataFrame(dict(panel=panel, label=label, epoch=epoch, n_train=n_train, atom=np.arange(
            lpr.size), rank=rank, species=final["numbers"], lpr=lpr)))
        difference = normalised_relative_difference(lpr, final["lpr"])
        rows.append(dict(panel=panel, label=label, epoch=epoch, n_train=n_train,
                         quantity="normalised_relative_lpr_difference", value=difference,
                         paper=PAPER_SIZE_DIFFERENCES.get(n_train) if panel == "b" else None))
        log.info("panel %s, %s: normalised relative LPR difference from the final model %.4f", panel, label,
                 difference)

    n_main = len(main.rows)
    last = int(main.meta.get("best_epoch", -1))
    add("final", f"final (epoch {last})", last, n_main, final["lpr"])
    for point in checkpoints:
        ll = main.last_layer(point["file"])
        lpr = predictions(fitted_llpr(main, frames, ll), test, reduce)["lpr"]
        add("a", f"epoch {point['epoch']}", int(point["epoch"]), n_main, lpr)
    for run in need.runs[1:]:
        net = trained(input_path(cfg, model_key(need.model, need.dataset, run)), frames)
        if net.meta.get("n_valid") != main.meta.get("n_valid"):
            raise ValueError(f"run {run}: {net.meta.get('n_valid')} validation molecules, the main model "
                             f"{main.meta.get('n_valid')}: panel (b) keeps the validation set fixed")
        lpr = predictions(fitted_llpr(net, frames), test, net.config.rigidity.reduce)["lpr"]
        add("b", f"n = {len(net.rows)}", int(net.meta.get("best_epoch", -1)), len(net.rows), lpr)
    table = pd.DataFrame(rows, columns=["panel", "label", "epoch", "n_train", "quantity", "value", "paper"])
    table["model"], table["run"], table["n_test_molecules"] = need.model, need.runs[0], len(test)
    table["max_epochs"] = int(main.config.max_epochs)
    reference = reference_methods(test)
    return {"table": Table(table, reference), "points": Table(pd.concat(points, ignore_index=True), reference)}


# -- figure -------------------------------------------------------------------------------------------------------
def plot(cfg: DictConfig):
    """LPRs of the test atoms ordered by the final model's: (a) along training, (b) against training-set size."""
    import matplotlib.pyplot as plt

    t, pts = read_table(input_path(cfg, "table")), read_table(input_path(cfg, "points"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    final = pts[pts["panel"] == "final"].sort_values("rank")
    for ax, panel, title in ((axes[0], "a", "(a) along training"), (axes[1], "b", "(b) training-set size")):
        labels = list(dict.fromkeys(pts[pts["panel"] == panel]["label"]))
        colours = plt.cm.viridis(np.linspace(0.05, 0.85, max(len(labels), 1)))
        for colour, label in zip(colours, labels):
            p = pts[(pts["panel"] == panel) & (pts["label"] == label)].sort_values("rank")
            d = float(t[(t["panel"] == panel) & (t["label"] == label)]["value"].iloc[0])
            ax.plot(p["rank"], p["lpr"], ".", ms=2.5, color=colour, label=f"{label}: {100 * d:.1f} %")
        ax.plot(final["rank"], final["lpr"], "-", color="k", lw=1.0, label=final["label"].iloc[0])
        ax.set(yscale="log", xlabel=f"test atoms ({int(t['n_test_molecules'].iloc[0])} molecules), ordered by the "
               "final model's LPR", ylabel="last-layer LPR")
        ax.set_title(f"{title}: mean normalised relative difference from the final model", fontsize=9)
        ax.legend(fontsize=6.5, markerscale=3)
    fig.suptitle(f"Fig. 3: SOAP-BPNN on QM9 ({int(final['n_train'].iloc[0])} training molecules, "
                 f"{int(t['max_epochs'].iloc[0])} epochs); reference: {reference}; scale: {scale}", fontsize=10)
    return fig
