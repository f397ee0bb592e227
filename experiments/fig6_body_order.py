"""Figure 6 (Section V.1): body order in linear ACE, self-interacting against purified.

Linear ridge models on Si n-mers with ACE features split into body-order blocks
nu = 1..4 (:class:`rigidity.descriptors.ace.ACE`). Four training sets replace 50
pentamers at a time by dimers, trimers and tetramers; for each set and each
flavour the stages compute

- the CPR of every nu block on the test pentamers (pentamers in no training set):
  1 / (x_c^T H^-1 x_c) with H = X^T X + alpha I and x_c the atom-mean feature
  vector with the other blocks zeroed (paper's definition), averaged over them
  (a purified block that is identically zero, a pentamer with no atom of nu
  neighbours within the cutoff, has an infinite CPR: those are counted in
  ``cpr_zero_block_count`` and left out of the mean and median). The figure
  shows the median (``experiment.cpr_statistic``): a block that is nearly zero
  (four neighbours just inside the cutoff) has a huge CPR, and a few such
  pentamers decide the mean;
- the predicted total energy along the Si-Si dimer curve, and the nu = 1
  component alone;
- beyond the paper: the RMSE of the nu = 1 component against the reference's
  two-body curve. The Stillinger-Weber reference has an exact two- plus
  three-body split (``info["energy_two_body"]``, ``info["energy_three_body"]``),
  so the per-block energies of the test pentamers are compared with it as well.

Model: per-atom energy targets y = E / N - E_isolated with atom-mean features,
w = (X^T X + alpha I)^-1 X^T y. The paper centred its targets; here
``model.center_targets`` is false by default: an intercept is a body-order-zero
constant that a cluster expansion does not have, and with it the nu = 1
component could match the two-body curve only up to that constant. Stillinger-
Weber's isolated atom is at 0 eV, so y needs no centring to be a cluster expansion.

Reference: whatever the dataset's structures record (Stillinger-Weber at the
default scales, not DFT); the table and the figure carry it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ._results import (load_trained, pick_input, read_table, reference_methods, save_arrays, save_figure,
                       write_manifest, write_table)
from ._stage import scaled_settings

log = logging.getLogger(__name__)

SUBSETS = ("dimer", "trimer", "tetramer", "pentamer")
FLAVOURS = ("self_interacting", "purified")


def settings(cfg: DictConfig) -> dict:
    """The experiment's settings at ``cfg.scale.name``: the per-scale ``sizes`` entry applied."""
    s = scaled_settings(cfg)
    exp, model = s["experiment"], s["model"]
    for flavour in exp["flavours"]:
        if flavour not in FLAVOURS:
            raise ValueError(f"experiment.flavours: {flavour!r} is not one of {list(FLAVOURS)}")
    for i, counts in enumerate(exp["training_sets"]):
        bad = sorted(set(counts) - set(SUBSETS))
        if bad:
            raise ValueError(f"experiment.training_sets[{i}]: subsets {bad} are not among {list(SUBSETS)}")
        if any(int(c) < 0 for c in counts.values()):
            raise ValueError(f"experiment.training_sets[{i}] = {counts}: counts must be >= 0")
    if not model["ridge_alpha"] > 0:
        raise ValueError(f"model.ridge_alpha must be positive, got {model['ridge_alpha']}")
    return s


def descriptor(model: dict, purified: bool):
    from rigidity.descriptors.ace import ACE

    return ACE(cutoff=model["cutoff"], total_degree=model["total_degree"][: model["correlation_order"]],
               purified=purified, angular_weight=model["angular_weight"], radial_inner=model["radial_inner"])


def training_label(counts: dict) -> str:
    """'450 pentamers + 50 dimers' style label of a training set."""
    return " + ".join(f"{counts[s]} {s}s" for s in reversed(SUBSETS) if counts.get(s))


def draw_training_sets(subset: np.ndarray, training_sets: list[dict], seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Indices of each training set, and of the test pentamers (in no training set).

    One random order per subset (seeded): each set takes the first ``count`` of
    every subset's order, so the later sets replace pentamers of the earlier ones
    by smaller clusters, as in the paper.
    """
    rng = np.random.default_rng(seed)
    order = {s: rng.permutation(np.flatnonzero(subset == s)) for s in SUBSETS}
    sets = []
    for i, counts in enumerate(training_sets):
        rows = []
        for s in SUBSETS:
            c = int(counts.get(s, 0))
            if c > len(order[s]):
                raise ValueError(f"training set {i} ({training_label(counts)}) needs {c} {s}s, the dataset has {len(order[s])}")
            rows.append(order[s][:c])
        sets.append(np.sort(np.concatenate(rows)))
    used = max(int(c.get("pentamer", 0)) for c in training_sets)
    test = np.sort(order["pentamer"][used:])
    if len(test) == 0:
        raise ValueError(f"no pentamers left for the test set: the dataset has {len(order['pentamer'])}, training uses {used}")
    return sets, test


def ridge(X: np.ndarray, y: np.ndarray, alpha: float, center: bool) -> tuple[np.ndarray, float]:
    """Weights and intercept of min |X w + b - y|^2 + alpha |w|^2 (b = mean of y when ``center``)."""
    from scipy.linalg import cho_factor, cho_solve

    b = float(y.mean()) if center else 0.0
    H = X.T @ X + alpha * np.eye(X.shape[1])
    return cho_solve(cho_factor(H), X.T @ (y - b)), b


# ----------------------------------------------------------------------------------------------
# stages


def train(cfg: DictConfig) -> None:
    """Features of every structure for both flavours, and one ridge model per flavour and training set."""
    from .datasets.io import read_frames

    s = settings(cfg)
    exp, model = s["experiment"], s["model"]
    frames = read_frames(pick_input(cfg.inputs, "si_nmers.extxyz"))
    info = {k: np.array([a.info.get(k, np.nan) for a in frames]) for k in ("energy", "energy_two_body", "energy_three_body")}
    subset = np.array([a.info["subset"] for a in frames])
    n_atoms = np.array([len(a) for a in frames])
    separation = np.array([a.info.get("separation", np.nan) for a in frames], dtype=float)
    y = info["energy"] / n_atoms - float(exp["isolated_atom_energy"])
    sets, test = draw_training_sets(subset, exp["training_sets"], int(exp["seed"]))
    out = Path(cfg.output).parent
    arrays = dict(subset=subset, n_atoms=n_atoms, separation=separation, energy=info["energy"],
                  energy_two_body=info["energy_two_body"], energy_three_body=info["energy_three_body"], test=test)
    weights, timings, sizes = {}, {}, {}
    for flavour in exp["flavours"]:
        ace = descriptor(model, purified=flavour == "purified")
        t0 = time.perf_counter()
        X = ace.structure_features(frames, reduce="mean")
        timings[flavour] = time.perf_counter() - t0
        sizes[flavour] = ace.block_sizes
        log.info("%s: %s, features of %d structures in %.1f s", flavour, ace, len(frames), timings[flavour])
        arrays[f"X_{flavour}"] = X
        for k, rows in enumerate(sets):
            w, b = ridge(X[rows], y[rows], model["ridge_alpha"], model["center_targets"])
            weights[f"w_{flavour}_{k}"] = w
            weights[f"b_{flavour}_{k}"] = np.array(b)
    for k, rows in enumerate(sets):
        arrays[f"train_{k}"] = rows
    features = save_arrays(out / "features.npz", **arrays)
    models = save_arrays(out / "models.npz", **weights)
    write_manifest(cfg.output, {"features": features, "models": models}, scale=cfg.scale.name,
                   reference_method=reference_methods(frames), block_sizes=sizes, feature_seconds=timings,
                   training_sets=[training_label(c) for c in exp["training_sets"]], settings=s)


def rigidity(cfg: DictConfig) -> None:
    """CPR per block on the test pentamers, dimer curves, and energies per block against the reference split."""
    import pandas as pd

    from rigidity import Hessian

    data, weights, meta = load_trained(cfg.inputs)
    s = meta["settings"]
    exp, model = s["experiment"], s["model"]
    alpha = float(model["ridge_alpha"])
    test = data["test"]
    curve = np.flatnonzero(data["subset"] == "dimer_curve")
    curve = curve[np.argsort(data["separation"][curve])]
    n_atoms = data["n_atoms"]
    rows = []

    def add(**row):
        rows.append(row)

    for flavour in exp["flavours"]:
        X = data[f"X_{flavour}"]
        X_test = X[test]
        block_sizes = meta["block_sizes"][flavour]
        edges = np.concatenate([[0], np.cumsum(list(block_sizes.values()))])
        blocks = {name: slice(int(edges[i]), int(edges[i + 1])) for i, name in enumerate(block_sizes)}
        for k, label in enumerate(meta["training_sets"]):
            train_rows = data[f"train_{k}"]
            w, b = weights[f"w_{flavour}_{k}"], float(weights[f"b_{flavour}_{k}"])
            h = Hessian(X.shape[1], regularizer=alpha).add(X[train_rows])
            cpr = h.cpr(X_test, blocks)
            common = dict(flavour=flavour, training_set=k + 1, training_label=label)
            for name, values in cpr.items():
                # a pentamer with no atom of >= nu neighbours has a purified nu block of zeros: its component
                # is exactly 0 whatever the weights, an infinite CPR; such pentamers are counted, not averaged
                zero = ~np.any(X_test[:, blocks[name]] != 0, axis=1)
                finite = values[~zero]
                add(**common, quantity="cpr_mean", block=name, value=float(np.mean(finite)) if finite.size else np.inf)
                add(**common, quantity="cpr_median", block=name, value=float(np.median(finite)) if finite.size else np.inf)
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
    table = pd.DataFrame(rows, columns=["flavour", "training_set", "training_label", "quantity", "block", "x", "value",
                                        "reference"])
    table["n_test"] = len(test)
    write_table(table, cfg.output, scale=meta["scale"], reference_method=meta["reference_method"])
    log.info("wrote %d rows to %s", len(table), cfg.output)


def figure(cfg: DictConfig) -> None:
    """Rows: self-interacting, purified. Columns: CPR per nu, total dimer curve, nu = 1 component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = read_table(pick_input(cfg.inputs, "fig6_body_order.csv"))
    statistic = cfg.experiment.cpr_statistic
    if statistic not in ("mean", "median"):
        raise ValueError(f"experiment.cpr_statistic must be 'mean' or 'median', got {statistic!r}")
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    flavours = [f for f in FLAVOURS if f in set(t["flavour"])]
    sets = sorted(t["training_set"].unique())
    labels = dict(zip(t["training_set"], t["training_label"]))
    colours = plt.cm.viridis(np.linspace(0.05, 0.85, len(sets)))
    fig, axes = plt.subplots(len(flavours), 3, figsize=(13, 3.6 * len(flavours)), squeeze=False, constrained_layout=True)
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
    save_figure(fig, cfg.output)
    plt.close(fig)
