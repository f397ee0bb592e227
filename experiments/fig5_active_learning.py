"""Figure 5 (Section IV.2): LPR-guided active learning on the least rigid atom of a liquid carbon frame.

A linear LE-ACE model (:mod:`experiments._le_ace`, cutoff 3.7 A, body orders <= 3)
defines the covariance H = sum_s g_s g_s^T + ``regularizer`` I over
``n_covariance_structures`` random structures of the whole carbon set (paper: 500,
``np.random.seed(123)``; here numpy's ``RandomState(covariance_seed).permutation``),
g_s the structure's features divided by its atom count (composition column 1).
Every atom i of the liquid frame has the LPR 1 / (f_i^T H^-1 f_i), f_i its local
features; the target is the atom with the lowest LPR. Small structures around it
(:mod:`rigidity.embedding`), each added to H through its per-atom features:

- ``original``: the whole frame (the baseline);
- ``carving``: the non-periodic sphere of radius ``environment_radius`` around the target;
- ``periodic``: :func:`~rigidity.embedding.periodic_embedding`, a cube tightly around
  that sphere (``buffer`` 0, the paper's "cube tightly containing the local
  environment"), buffer atoms displaced by N(0, ``sigma``), the cell enlarged until no
  two atoms are closer than ``min_distance``;
- ``high_symmetry``: :func:`~rigidity.embedding.high_symmetry_embedding` into a diamond
  supercell; the pure diamond supercell is added too (once, however many embeddings).

For n in ``n_added``, the table records the target's LPR enhancement
LPR_after / LPR_before - 1: n copies of the frame or of the carved cluster (the same
structure, as in the paper's Fig. 5c), or n embeddings with fresh random buffer
displacements. The environment radius (3.75 A) exceeds the model cutoff (3.7 A), so
every construction keeps the target's model environment exactly; the training stage
checks that its local features are unchanged (``environment_check`` in the manifest).

Reference: the LPR needs no labels; the table records the reference of the carbon
structures in H and of the frame (GFN1-xTB and Tersoff at the default scales, not DFT).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from . import _le_ace
from ._results import (atomic_path, load_trained, pick_input, read_manifest, read_table, reference_methods,
                       save_arrays, save_figure, write_manifest, write_table)
from ._stage import scaled_settings

log = logging.getLogger(__name__)

STRATEGIES = ("original", "carving", "periodic", "high_symmetry")
LABELS = {"original": "original structure", "carving": "cluster carving", "periodic": "periodic embedding",
          "high_symmetry": "HS embedding"}
COLOURS = {"original": "0.45", "carving": "C1", "periodic": "C0", "high_symmetry": "C3"}


def settings(cfg: DictConfig) -> dict:
    """The experiment's and model's settings at ``cfg.scale.name``, checked."""
    s = scaled_settings(cfg)
    exp, model = s["experiment"], s["model"]
    n_added = [int(n) for n in exp["n_added"]]
    if not n_added or min(n_added) < 1 or sorted(set(n_added)) != n_added:
        raise ValueError(f"experiment.n_added must be increasing positive integers, got {exp['n_added']}")
    if int(exp["n_covariance_structures"]) < 1:
        raise ValueError(f"experiment.n_covariance_structures must be positive, got {exp['n_covariance_structures']!r}")
    if not float(exp["environment_radius"]) >= float(model["cutoff"]):
        raise ValueError(f"experiment.environment_radius = {exp['environment_radius']} A is below the model cutoff "
                         f"{model['cutoff']} A: the constructions would not keep the target's model environment")
    _le_ace.total_degrees(model["E_max"])
    return s


def build_structures(frame, target: int, exp: dict) -> dict[str, list]:
    """The small structures of every strategy around atom ``target`` of ``frame``: lists of ASE Atoms."""
    from rigidity.embedding import carve_cluster, high_symmetry_embedding, periodic_embedding

    radius, n = float(exp["environment_radius"]), max(int(k) for k in exp["n_added"])
    # one seed sequence per construction: the k-th embedding is the same whatever the largest n
    seeds_periodic, seeds_hs = (s.spawn(n) for s in np.random.SeedSequence(int(exp["embedding_seed"])).spawn(2))
    periodic = [periodic_embedding(frame, target, radius, sigma=float(exp["sigma"]),
                                   min_distance=float(exp["min_distance"]), rng=np.random.default_rng(seeds_periodic[k]),
                                   buffer=float(exp["buffer"])) for k in range(n)]
    hs = [high_symmetry_embedding(frame, target, radius, lattice_constant=float(exp["lattice_constant"]),
                                  min_distance=float(exp["min_distance"]), sigma=float(exp["sigma"]),
                                  rng=np.random.default_rng(seeds_hs[k])) for k in range(n)]
    return {"original": [frame], "carving": [carve_cluster(frame, target, radius)], "periodic": periodic,
            "high_symmetry": [e for e, _ in hs], "diamond": [hs[0][1]]}


# ----------------------------------------------------------------------------------------------
# stages


def train(cfg: DictConfig) -> None:
    """Covariance features, LPR of every atom of the frame, the target, and features of every added structure."""
    import ase.io

    from rigidity import Hessian

    from .datasets.io import read_frames

    s = settings(cfg)
    exp, model = s["experiment"], s["model"]
    carbon = read_frames(pick_input(cfg.inputs, "carbon.extxyz"))
    # the frame needs positions only: the paper's own frame (source=file) has no energies or forces
    liquid = read_frames(pick_input(cfg.inputs, "carbon_liquid.extxyz"), energy_key=None, forces_key=None)
    if len(liquid) != 1:
        raise ValueError(f"carbon_liquid.extxyz must hold one frame, got {len(liquid)}")
    frame = liquid[0]
    n_cov = min(int(exp["n_covariance_structures"]), len(carbon))
    if n_cov < int(exp["n_covariance_structures"]):
        log.warning("the carbon set has %d structures: H uses all of them, not %d", len(carbon),
                    exp["n_covariance_structures"])
    cov = np.sort(np.random.RandomState(int(exp["covariance_seed"])).permutation(len(carbon))[:n_cov])
    ace = _le_ace.descriptor(model)
    t0 = time.perf_counter()
    G_cov = _le_ace.structure_features(ace, [carbon[i] for i in cov], reduce="mean")
    F, _ = _le_ace.atom_features(ace, [frame])
    seconds = time.perf_counter() - t0
    log.info("%s: features of %d structures and %d frame atoms in %.1f s", ace, n_cov, len(frame), seconds)
    h = Hessian(G_cov.shape[1], regularizer=float(exp["regularizer"])).add(G_cov)
    lpr = h.lpr(F)
    target = int(np.argmin(lpr))
    log.info("target: atom %d, LPR %.4g (median LPR of the frame %.4g)", target, lpr[target], np.median(lpr))

    structures = build_structures(frame, target, exp)
    arrays = dict(G_cov=G_cov, cov_index=cov, lpr=lpr, target=target, f_target=F[target])
    check = {}
    for name, group in structures.items():
        n_atoms = np.array([len(a) for a in group])
        # per-atom rows once per structure: their mean is the structure's row of H, atom 0 the target
        A, structure = (F, np.zeros(len(F), dtype=int)) if name == "original" else _le_ace.atom_features(ace, group)
        G = np.zeros((len(group), A.shape[1]))
        np.add.at(G, structure, A)
        arrays[f"G_{name}"], arrays[f"n_atoms_{name}"] = G / n_atoms[:, None], n_atoms
        if name not in ("original", "diamond"):  # atom 0 is the target: its features must be the frame's
            X0 = A[np.concatenate([[0], np.cumsum(n_atoms)[:-1]])]
            check[name] = float(np.max(np.abs(X0 - F[target])) / np.max(np.abs(F[target])))
    log.info("target environment kept: max relative feature change %s", check)
    if max(check.values()) > 1e-8:
        raise RuntimeError(f"a construction changed the target's local features: {check}")

    out = Path(cfg.output).parent
    # panel a: the target's neighbourhood in the frame and one structure of each strategy
    with atomic_path(out / "structures.extxyz") as tmp:
        ase.io.write(tmp, [frame] + [structures[k][0] for k in ("carving", "periodic", "high_symmetry", "diamond")],
                     format="extxyz")
    features = save_arrays(out / "features.npz", **arrays)
    models = save_arrays(out / "models.npz", regularizer=float(exp["regularizer"]))
    methods = f"H: {reference_methods([carbon[i] for i in cov])}; frame: {reference_methods([frame])}"
    write_manifest(cfg.output, {"features": features, "models": models, "structures": out / "structures.extxyz"},
                   scale=cfg.scale.name, reference_method=methods, descriptor=repr(ace),
                   block_sizes=_le_ace.block_sizes(ace), feature_seconds=seconds, n_frame_atoms=len(frame),
                   target=target, environment_check=check,
                   structure_info={k: [dict(n_atoms=len(a), **{i: a.info[i] for i in ("cell_edge", "n_buffer")
                                                                if i in a.info}) for a in v[:3]]
                                   for k, v in structures.items()},
                   settings=s)


def added_rows(data: dict, strategy: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows added to H by ``n`` structures of a strategy, with their weights (copies count as weight)."""
    G = data[f"G_{strategy}"]
    if strategy in ("original", "carving"):  # the same structure n times
        return G[:1], np.array([float(n)])
    if n > len(G):
        raise ValueError(f"{n} {strategy} structures asked for, {len(G)} built (experiment.n_added)")
    rows = G[:n]
    if strategy == "high_symmetry":  # the pure diamond cell, once
        rows = np.vstack([rows, data["G_diamond"]])
    return rows, np.ones(len(rows))


def rigidity(cfg: DictConfig) -> None:
    """The target's LPR enhancement for every strategy and number of added structures."""
    import pandas as pd

    from rigidity import Hessian

    data, _, meta = load_trained(cfg.inputs)
    exp = meta["settings"]["experiment"]
    h = Hessian(data["G_cov"].shape[1], regularizer=float(exp["regularizer"])).add(data["G_cov"])
    f = data["f_target"][None]
    g_frame = data["G_original"]
    lpr0, pr0 = float(h.lpr(f)[0]), float(h.pr(g_frame)[0])
    records = []
    for strategy in STRATEGIES:
        for n in exp["n_added"]:
            rows, weights = added_rows(data, strategy, int(n))
            h1 = h.updated(rows, weights=weights)
            lpr1 = float(h1.lpr(f)[0])
            n_atoms = data[f"n_atoms_{strategy}"]
            atoms = int(n_atoms[0]) * int(n) if len(n_atoms) == 1 else int(n_atoms[: int(n)].sum())
            if strategy == "high_symmetry":
                atoms += int(data["n_atoms_diamond"][0])
            records.append(dict(strategy=strategy, n_added=int(n), atoms_added=atoms, lpr_before=lpr0, lpr_after=lpr1,
                                lpr_enhancement_percent=100.0 * (lpr1 / lpr0 - 1.0),
                                frame_pr_ratio=float(h1.pr(g_frame)[0]) / pr0))
    table = pd.DataFrame(records)
    lpr = data["lpr"]
    table["target_atom"], table["frame_atoms"] = int(data["target"]), len(lpr)
    table["frame_lpr_median"], table["n_covariance"] = float(np.median(lpr)), len(data["G_cov"])
    write_table(table, cfg.output, scale=meta["scale"], reference_method=meta["reference_method"])
    one = table[table["n_added"] == table["n_added"].min()].set_index("strategy")["lpr_enhancement_percent"]
    log.info("LPR enhancement with one structure (%%): %s", one.round(3).to_dict())


def _draw_structures(axes, path: Path, radius: float) -> None:
    """Panel a: the target's neighbourhood in the frame, and the carved, periodic and HS structures."""
    import ase.io
    from ase.visualize.plot import plot_atoms

    frame, cluster, periodic, hs, _ = ase.io.read(path, ":")
    target = int(cluster.info["centre_index"])
    vectors = frame.get_distances(target, range(len(frame)), mic=True, vector=True)
    d = np.linalg.norm(vectors, axis=1)
    near = frame[np.flatnonzero(d < 2 * radius)]  # the frame is too large to draw whole: 2 r_env around the target,
    near.positions = vectors[d < 2 * radius]  # unwrapped (minimum image)
    near.pbc, near.cell = False, None
    shown = [("original (2 r_env around the target)", near, d[d < 2 * radius] < radius),
             ("cluster carving", cluster, np.ones(len(cluster), bool)),
             ("periodic embedding", periodic, ~periodic.arrays["buffer"]),
             ("HS embedding", hs, ~hs.arrays["buffer"])]
    for ax, (title, atoms, env) in zip(axes, shown):
        colours = np.where(env, "#3b6fd6", "#c8c8c8").tolist()
        colours[0 if title != shown[0][0] else int(np.argmin(d[d < 2 * radius]))] = "#ffd400"
        if title == "HS embedding":
            hs_env = np.zeros(len(atoms), bool)
            hs_env[int(atoms.info["n_environment"]): int(atoms.info["n_environment"]) + int(atoms.info["n_hs_environment"])] = True
            colours = [("#d63b3b" if h else c) for h, c in zip(hs_env, colours)]
        plot_atoms(atoms, ax, colors=colours, radii=0.35, rotation="10x,20y,0z", show_unit_cell=2)
        ax.set_title(f"{title}\n{len(atoms)} atoms", fontsize=8)
        ax.set_axis_off()


def figure(cfg: DictConfig) -> None:
    """(a) the structures, (b) LPR enhancement with one added structure, (c) against the number added."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = read_table(pick_input(cfg.inputs, "fig5_active_learning.csv"))
    files, meta = read_manifest(pick_input(cfg.inputs, "manifest.json"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.15])
    _draw_structures([fig.add_subplot(grid[0, k]) for k in range(4)], files["structures"],
                     float(meta["settings"]["experiment"]["environment_radius"]))
    ax_b, ax_c = fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2:])
    n1 = int(t["n_added"].min())
    one = t[t["n_added"] == n1].set_index("strategy").loc[list(STRATEGIES)]
    bars = ax_b.bar([LABELS[s] for s in STRATEGIES], one["lpr_enhancement_percent"],
                    color=[COLOURS[s] for s in STRATEGIES])
    ax_b.bar_label(bars, fmt="%.3g %%", fontsize=8)
    ax_b.set_ylabel("LPR enhancement of the target atom (%)")
    ax_b.set_title(f"(b) {n1} added structure" + (" (+ the diamond cell for HS)" if n1 == 1 else "s"), fontsize=9)
    ax_b.tick_params(axis="x", labelsize=8)
    for s in STRATEGIES:
        d = t[t["strategy"] == s].sort_values("n_added")
        ax_c.plot(d["n_added"], d["lpr_enhancement_percent"], "o-", color=COLOURS[s], label=LABELS[s], ms=4)
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("added structures (original, carving: the same one repeated)")
    ax_c.set_ylabel("LPR enhancement of the target atom (%)")
    ax_c.set_title("(c) LPR enhancement against the number of added structures", fontsize=9)
    ax_c.legend(fontsize=8)
    fig.suptitle(f"Fig. 5: LPR-guided active learning, atom {int(t['target_atom'].iloc[0])} of a "
                 f"{int(t['frame_atoms'].iloc[0])}-atom liquid carbon frame, LE-ACE covariance of "
                 f"{int(t['n_covariance'].iloc[0])} structures.\nReference: {reference}; scale: {scale}", fontsize=9)
    save_figure(fig, cfg.output)
    plt.close(fig)
