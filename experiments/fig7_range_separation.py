"""Figure 7 (Section V.2): short- and long-range blocks of SOAP+LODE, plain against range-separated.

Ridge models on water dimers with per-atom SOAP+LODE features
(:class:`rigidity.descriptors.soap_lode.SoapLode`): an SR block (SOAP power
spectrum, cutoff 2.8 A) and an LR block (SOAP density x LODE potential), the LR
block either ``non_orthogonal`` (reciprocal-space LODE of every atom) or
``range_separated`` (minus the real-space part of the atoms within 2.8 A). For
each variant and each n in ``experiment.train_sizes`` (the first n dimers by
increasing O-O distance) the stages compute

- the CPR of the SR and LR blocks on every dimer (the paper's "CPR on all
  dimers"), 1 / (x_C^T H^-1 x_C) with H = X^T X + alpha I, X the training
  dimers' structure features and x_C a dimer's features with the other block
  zeroed; the table has every dimer's value and the mean, median and geometric
  mean (the figure shows ``experiment.cpr_statistic``, the paper's mean);
- predictions on isolated monomers, with the zero of both predictions and
  references at the monomer mean (paper), and their RMSE;
- beyond the paper: the PR of the monomer predictions, the training RMSE and
  the RMSE on the dimers left out of training.

Model. E = sum_i w . x_i + sum_i e_{Z_i}: a linear model on the structure sums
X = sum_i x_i (targets are total energies, eV) plus per-species energies e_Z
fitted by least squares (minimum norm) to the training structures'
compositions (``model.baseline: composition``). All dimers have the
composition O2H4, so e_Z is fixed only up to its O:H split, but the monomers
(OH2) have the same ratio: their baseline is half the training dimers' mean
energy whatever the split, and the monomer comparison removes any constant
anyway. The weights minimise |X w - y|^2 + alpha |w|^2 (alpha = 1e-11, paper),
solved through the SVD of X (n < d: exact to rounding, no normal equations).

Reference: whatever the structures record (GFN2-xTB at the default scales,
NOT DFT); the table and the figure carry it.
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

VARIANTS = ("non_orthogonal", "range_separated")
STATISTICS = ("mean", "median", "geometric_mean")
DIMERS, MONOMERS = "water_dimers.extxyz", "water_monomers.extxyz"


def settings(cfg: DictConfig) -> dict:
    """The experiment's and model's settings at ``cfg.scale.name``: the per-scale ``sizes`` entries merged in."""
    out = scaled_settings(cfg)
    exp, model = out["experiment"], out["model"]
    bad = [v for v in exp["variants"] if v not in VARIANTS]
    if bad or not exp["variants"]:
        raise ValueError(f"experiment.variants: {bad or exp['variants']} must be among {list(VARIANTS)}")
    sizes = [int(n) for n in exp["train_sizes"]]
    if not sizes or min(sizes) < 1 or sorted(set(sizes)) != sizes:
        raise ValueError(f"experiment.train_sizes must be increasing positive integers, got {exp['train_sizes']}")
    if exp["cpr_statistic"] not in STATISTICS:
        raise ValueError(f"experiment.cpr_statistic must be one of {list(STATISTICS)}, got {exp['cpr_statistic']!r}")
    if not float(model["ridge_alpha"]) > 0:
        raise ValueError(f"model.ridge_alpha must be positive, got {model['ridge_alpha']}")
    if model["baseline"] not in ("composition", "none"):
        raise ValueError(f"model.baseline must be 'composition' or 'none', got {model['baseline']!r}")
    return out


def descriptor(model: dict):
    """The :class:`~rigidity.descriptors.soap_lode.SoapLode` that ``model`` (config/model/soap_lode.yaml) describes."""
    from rigidity.descriptors.soap_lode import SoapLode

    soap, lode = model["soap"], model["lode"]
    return SoapLode(
        model["species"],
        cutoff=soap["cutoff"], n_radial=soap["n_radial"], max_angular=soap["max_angular"],
        atomic_gaussian_width=soap["atomic_gaussian_width"], cutoff_width=soap["cutoff_width"],
        lode_exponent=lode["exponent"], lode_smearing=lode["atomic_gaussian_width"], k_cutoff=lode["k_cutoff"],
        lode_n_radial=lode["n_radial"], lode_radius=lode["radius"], box_edge=model["box_edge"],
        background_correction=lode["background_correction"], lode_spline_accuracy=lode["spline_accuracy"],
        real_space_spline_accuracy=lode["real_space_spline_accuracy"],
    )


def composition(frames, species) -> np.ndarray:
    """(n_structures, n_species) atom counts per species."""
    species = list(species)
    return np.array([[int(np.sum(a.numbers == z)) for z in species] for a in frames], dtype=float)


def ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    r"""Weights minimising :math:`\lVert X w - y\rVert^2 + \alpha \lVert w\rVert^2`, through the SVD of X.

    :math:`w = V\,\mathrm{diag}(s / (s^2 + \alpha))\,U^\top y`: no normal equations, whose
    condition number (largest eigenvalue over alpha = 1e-11) would cost most of float64.
    """
    from ._linear import ridge_path

    return ridge_path(X, y, [alpha])[0]


def baseline(C: np.ndarray, E: np.ndarray, kind: str) -> np.ndarray:
    """Per-species energies (eV) from the compositions C (n, S) and energies E (n,): min-norm least squares."""
    if kind == "none":
        return np.zeros(C.shape[1])
    return np.linalg.lstsq(C, E, rcond=None)[0]


def _sorted_dimers(frames):
    from .datasets.water_dimers import o_o_distance

    d = np.array([float(a.info.get("o_o_distance", o_o_distance(a))) for a in frames])
    order = np.argsort(d, kind="stable")
    if np.any(order != np.arange(len(d))):
        log.warning("the dimers were not sorted by O-O distance: sorting them")
    return [frames[i] for i in order], d[order]


def _rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


# ----------------------------------------------------------------------------------------------
# stages


def train(cfg: DictConfig) -> None:
    """Features of all dimers and monomers for both variants, and one ridge model per variant and n."""
    from .datasets.io import read_frames

    s = settings(cfg)
    exp, model = s["experiment"], s["model"]
    dimers, distance = _sorted_dimers(read_frames(pick_input(cfg.inputs, DIMERS)))
    monomers = read_frames(pick_input(cfg.inputs, MONOMERS))
    sizes = [int(n) for n in exp["train_sizes"]]
    if sizes[-1] > len(dimers):
        raise ValueError(
            f"experiment.train_sizes {sizes} exceed the {len(dimers)} dimers of {pick_input(cfg.inputs, DIMERS)}: "
            f"set experiment.sizes.{cfg.scale.name}.train_sizes"
        )
    desc = descriptor(model)
    t0 = time.perf_counter()
    desc.density_calculator(), desc.lode_calculator(), desc.background()
    if "range_separated" in exp["variants"]:
        desc.real_space_lode_calculator()
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    fd = desc.compute(dimers, exp["variants"])
    fm = desc.compute(monomers, exp["variants"])
    t_features = time.perf_counter() - t0
    log.info("SOAP+LODE: %d SR + %d LR features; splines %.1f s, features of %d dimers and %d monomers %.1f s",
             desc.n_sr, desc.n_lr, t_setup, len(dimers), len(monomers), t_features)

    E_d = np.array([a.info["energy"] for a in dimers], dtype=float)
    E_m = np.array([a.info["energy"] for a in monomers], dtype=float)
    C_d, C_m = composition(dimers, desc.species), composition(monomers, desc.species)
    arrays = dict(energy_dimers=E_d, energy_monomers=E_m, composition_dimers=C_d, composition_monomers=C_m,
                  o_o_distance=distance, species=np.array(desc.species), feature_names=np.array(desc.feature_names()))
    weights = dict(train_sizes=np.array(sizes))
    alpha = float(model["ridge_alpha"])
    t0 = time.perf_counter()
    for variant in exp["variants"]:
        X, Xm = fd[variant].structure_sums(), fm[variant].structure_sums()
        arrays[f"X_dimers__{variant}"], arrays[f"X_monomers__{variant}"] = X, Xm
        W, B = [], []
        for n in sizes:
            e = baseline(C_d[:n], E_d[:n], model["baseline"])
            W.append(ridge(X[:n], E_d[:n] - C_d[:n] @ e, alpha))
            B.append(e)
        weights[f"w__{variant}"], weights[f"e__{variant}"] = np.array(W), np.array(B)
    t_fit = time.perf_counter() - t0
    out = Path(cfg.output).parent
    features = save_arrays(out / "features.npz", **arrays)
    models = save_arrays(out / "models.npz", **weights)
    blocks = {k: [v.start, v.stop] for k, v in desc.blocks.items()}
    write_manifest(
        cfg.output, {"features": features, "models": models}, scale=cfg.scale.name,
        reference_method=reference_methods(list(dimers) + list(monomers)), settings=s, descriptor=desc.hypers(),
        blocks=blocks, n_dimers=len(dimers), n_monomers=len(monomers), train_sizes=sizes,
        seconds={"splines": t_setup, "features": t_features, "fit": t_fit},
    )


def rigidity(cfg: DictConfig) -> None:
    """CPR of SR and LR on all dimers, monomer predictions and RMSE, per variant and training size."""
    import pandas as pd

    from rigidity import Hessian

    from .datasets.io import read_frames

    data, weights, meta = load_trained(cfg.inputs)
    s = meta["settings"]
    exp, model = s["experiment"], s["model"]
    alpha = float(model["ridge_alpha"])
    blocks = {k: slice(int(a), int(b)) for k, (a, b) in meta["blocks"].items()}
    dimers, _ = _sorted_dimers(read_frames(pick_input(cfg.inputs, DIMERS)))
    monomers = read_frames(pick_input(cfg.inputs, MONOMERS))
    E_d, E_m = data["energy_dimers"], data["energy_monomers"]
    for name, frames, E in (("dimers", dimers, E_d), ("monomers", monomers, E_m)):
        ref = np.array([a.info["energy"] for a in frames], dtype=float)
        if ref.shape != E.shape or not np.allclose(ref, E, rtol=0, atol=1e-9):
            raise ValueError(f"the {name} of inputs={list(cfg.inputs)} are not those the features of "
                             f"{pick_input(cfg.inputs, 'manifest.json')} were computed from: rerun the training stage")
    reference = reference_methods(list(dimers) + list(monomers))
    distance = data["o_o_distance"]
    sizes = [int(n) for n in weights["train_sizes"]]
    ref_m = E_m - E_m.mean()
    rows = []

    def add(**row):
        rows.append(row)

    for variant in exp["variants"]:
        X, Xm = data[f"X_dimers__{variant}"], data[f"X_monomers__{variant}"]
        for k, n in enumerate(sizes):
            common = dict(variant=variant, n_train=n)
            w, e = weights[f"w__{variant}"][k], weights[f"e__{variant}"][k]
            h = Hessian(X.shape[1], regularizer=alpha).add(X[:n])
            cpr = h.cpr(X, blocks)
            for block, values in cpr.items():
                values = np.asarray(values)
                for i, v in enumerate(values):
                    add(**common, quantity="cpr", block=block, statistic="per_structure", structure=i,
                        o_o_distance=distance[i], value=v, unit="1")
                stats = {"mean": np.mean(values), "median": np.median(values),
                         "geometric_mean": np.exp(np.mean(np.log(values)))}
                for stat, v in stats.items():
                    add(**common, quantity="cpr", block=block, statistic=stat, value=v, unit="1")
            pred_d = X @ w + data["composition_dimers"] @ e
            pred_m = Xm @ w + data["composition_monomers"] @ e
            pred_m = pred_m - pred_m.mean()
            for i, (p, r) in enumerate(zip(pred_m, ref_m)):
                add(**common, quantity="monomer_energy", block="total", statistic="per_structure", structure=i,
                    value=p, reference=r, unit="eV")
            add(**common, quantity="monomer_rmse", block="total", statistic="rmse",
                value=1000 * _rmse(pred_m - ref_m), unit="meV")
            add(**common, quantity="train_rmse", block="total", statistic="rmse",
                value=1000 * _rmse(pred_d[:n] - E_d[:n]), unit="meV")
            if n < len(E_d):
                add(**common, quantity="heldout_dimer_rmse", block="total", statistic="rmse",
                    value=1000 * _rmse(pred_d[n:] - E_d[n:]), unit="meV")
            pr = np.asarray(h.pr(Xm))
            add(**common, quantity="monomer_pr", block="total", statistic="mean", value=float(pr.mean()), unit="1")
            add(**common, quantity="monomer_pr", block="total", statistic="median", value=float(np.median(pr)),
                unit="1")
            log.info("%s n=%d: CPR mean SR %.3g LR %.3g, monomer RMSE %.2f meV", variant, n,
                     np.mean(cpr["SR"]), np.mean(cpr["LR"]), 1000 * _rmse(pred_m - ref_m))
    columns = ["quantity", "variant", "n_train", "block", "statistic", "structure", "o_o_distance", "value",
               "reference", "unit"]
    table = pd.DataFrame(rows, columns=columns)
    table["structure"] = table["structure"].astype("Int64")
    table["n_dimers"] = len(E_d)
    table["n_monomers"] = len(E_m)
    write_table(table, cfg.output, scale=meta["scale"], reference_method=reference)
    log.info("wrote %d rows to %s", len(table), cfg.output)


def figure(cfg: DictConfig) -> None:
    """Left: CPR of SR and LR against n for both variants. Right: monomer parity plots, one per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = read_table(pick_input(cfg.inputs, "fig7_range_separation.csv"))
    statistic = cfg.experiment.cpr_statistic
    if statistic not in STATISTICS:
        raise ValueError(f"experiment.cpr_statistic must be one of {list(STATISTICS)}, got {statistic!r}")
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    note = "" if "dft" in str(reference).lower() else " (not DFT)"
    variants = [v for v in VARIANTS if v in set(t["variant"])]
    sizes = sorted(t["n_train"].unique())
    colour = {"non_orthogonal": "tab:red", "range_separated": "tab:blue"}
    style = {"SR": dict(ls="-", marker="o"), "LR": dict(ls="--", marker="s", mfc="none")}

    fig, axes = plt.subplots(1, 1 + len(variants), figsize=(4.6 * (1 + len(variants)), 4.2), constrained_layout=True)
    ax = axes[0]
    cpr = t[(t["quantity"] == "cpr") & (t["statistic"] == statistic)]
    for v in variants:
        for block in ("SR", "LR"):
            d = cpr[(cpr["variant"] == v) & (cpr["block"] == block)].sort_values("n_train")
            ax.plot(d["n_train"], d["value"], color=colour[v], label=f"{v.replace('_', '-')} {block}", **style[block])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("training dimers n (first n by O-O distance)")
    ax.set_ylabel(f"CPR on all {int(t['n_dimers'].iloc[0])} dimers ({statistic.replace('_', ' ')})")
    ax.set_title("component-wise prediction rigidity")
    ax.legend(fontsize=7)

    energies = t[t["quantity"] == "monomer_energy"]
    ref = 1000 * energies["reference"]
    lim = float(np.max(np.abs(ref))) * 1.25 if len(ref) else 1.0
    cmap = plt.cm.viridis(np.linspace(0.1, 0.9, len(sizes)))
    for ax, v in zip(axes[1:], variants):
        hidden = 0
        for j, n in enumerate(sizes):
            d = energies[(energies["variant"] == v) & (energies["n_train"] == n)]
            rmse = t[(t["quantity"] == "monomer_rmse") & (t["variant"] == v) & (t["n_train"] == n)]["value"].iloc[0]
            last = n == sizes[-1]
            x, y = 1000 * d["reference"], 1000 * d["value"]
            hidden += int(np.sum(np.abs(y) > lim)) if last else 0
            ax.scatter(x, y, s=14 if last else 6, color=cmap[j], alpha=1.0 if last else 0.35, lw=0,
                       label=f"n = {n}: RMSE {rmse:.3g} meV", zorder=3 if last else 2)
        ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, zorder=1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"reference energy ({reference}), meV")
        ax.set_ylabel("predicted energy, meV")
        title = f"{v.replace('_', '-')} SOAP+LODE: monomers"
        if hidden:
            title += f"\n({hidden} of the n = {sizes[-1]} points outside the range)"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle(f"Fig. 7: range separation in SOAP+LODE, trained on water dimers; energies zero at the monomer "
                 f"mean. reference: {reference}{note}; scale: {scale}", fontsize=9)
    save_figure(fig, cfg.output)
    plt.close(fig)
