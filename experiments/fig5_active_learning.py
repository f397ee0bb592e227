"""Figure 5 (Section IV.2): LPR-guided active learning on the least rigid atom of a liquid carbon frame.

A linear LE-ACE model (:mod:`experiments.models.le_ace`, config/model/le_ace_local.yaml:
cutoff 3.7 A, body orders <= 3) defines the covariance H = sum_s g_s g_s^T +
``model.rigidity.regularizer`` I over random structures of the whole carbon set (the
experiment's ``hessians`` rows: paper ``n500-s123``, 500 structures drawn with
``np.random.seed(123)``, as numpy's ``RandomState(123).permutation``; see
experiments/runs.py), g_s the structure's features divided by its atom count
(composition column 1). H is built as map-reduce: ``scale.hessian_shards``
accumulate_hessian jobs and one merge_hessian job.
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
every construction keeps the target's model environment exactly; the analysis checks
that its local features are unchanged (to 1e-8 relative) before it computes anything.

Reference: the LPR needs no labels; the table records the reference of the carbon
structures in H and of the frame (GFN1-xTB and Tersoff at the default scales, not DFT).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import MISSING, DictConfig

from ._results import load_features, reference_methods
from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig, to_plain
from .layout import data_key, features_key, hessian_key
from .models import le_ace

log = logging.getLogger(__name__)

STRATEGIES = ("original", "carving", "periodic", "high_symmetry")
LABELS = {"original": "original structure", "carving": "cluster carving", "periodic": "periodic embedding",
          "high_symmetry": "HS embedding"}
#: what analyse() returns, and the file type of each (results/<scale>/tables/fig5_active_learning.<name>.<ext>)
OUTPUTS = {"table": "csv", "structures": "extxyz"}
COLOURS = {"original": "0.45", "carving": "C1", "periodic": "C0", "high_symmetry": "C3"}


@dataclass
class Settings(ExperimentConfig):
    environment_radius: float = MISSING  # A, radius of the carved sphere and of the environment every embedding keeps
    buffer: float = 0.0  # A, extra half-width of the periodic cube beyond the sphere (0: the text's tight cube)
    sigma: float = MISSING  # A, standard deviation of buffer-atom displacements
    min_distance: float = MISSING  # A, no two atoms closer in an embedding
    lattice_constant: float = MISSING  # A, diamond carbon of the high-symmetry embedding
    embedding_seed: int = MISSING  # numpy SeedSequence of the buffer displacements, one child per embedding
    n_added: list[int] = MISSING  # structures added per strategy (panel c)


def check(cfg: DictConfig) -> None:
    """Values the schemas cannot check, of the experiment and of its model."""
    s, model = typed(cfg.experiment), typed(cfg.model)
    n_added = list(s.n_added)
    if not n_added or min(n_added) < 1 or sorted(set(n_added)) != n_added:
        raise ValueError(f"experiment.n_added must be increasing positive integers, got {n_added}")
    if not s.environment_radius >= model.descriptor.cutoff:
        raise ValueError(f"experiment.environment_radius = {s.environment_radius} A is below the model cutoff "
                         f"{model.descriptor.cutoff} A: "
                         f"the constructions would not keep the target's model environment")
    if len(s.features) != 1 or s.features[0].kind != "atoms" or len(s.hessians) != 1:
        raise ValueError("experiment.features must name the frame's per-atom features and experiment.hessians the "
                         f"one covariance, got {s.features} and {s.hessians}")
    le_ace.check(model)


def build_structures(frame, target: int, s: Settings) -> dict[str, list]:
    """The small structures of every strategy around atom ``target`` of ``frame``: lists of ASE Atoms."""
    from rigidity.embedding import carve_cluster, high_symmetry_embedding, periodic_embedding

    radius, n = float(s.environment_radius), max(int(k) for k in s.n_added)
    # one seed sequence per construction: the k-th embedding is the same whatever the largest n
    seeds_periodic, seeds_hs = (q.spawn(n) for q in np.random.SeedSequence(int(s.embedding_seed)).spawn(2))
    periodic = [periodic_embedding(frame, target, radius, sigma=float(s.sigma),
                                   min_distance=float(s.min_distance), rng=np.random.default_rng(seeds_periodic[k]),
                                   buffer=float(s.buffer)) for k in range(n)]
    hs = [high_symmetry_embedding(frame, target, radius, lattice_constant=float(s.lattice_constant),
                                  min_distance=float(s.min_distance), sigma=float(s.sigma),
                                  rng=np.random.default_rng(seeds_hs[k])) for k in range(n)]
    return {"original": [frame], "carving": [carve_cluster(frame, target, radius)], "periodic": periodic,
            "high_symmetry": [e for e, _ in hs], "diamond": [hs[0][1]]}


# ----------------------------------------------------------------------------------------------
# analysis


def covariance(cfg: DictConfig, s: Settings):
    """The merged covariance H (rule merge_hessian), checked to come from the composed model's descriptor."""
    from rigidity import Hessian

    need = s.hessians[0]
    path = input_path(cfg, hessian_key(need.model, need.dataset, need.rows))
    h = Hessian.load(path)
    want = json.dumps(to_plain(cfg.model.descriptor), sort_keys=True)
    if h.metadata.get("descriptor") != want:
        raise ValueError(f"{path} was built with descriptor {h.metadata.get('descriptor')}, the composed model has "
                         f"{want}: rerun accumulate_hessian")
    return h


def frame_features(cfg: DictConfig, s: Settings):
    """The liquid frame and its per-atom features (rule compute_features, kind atoms)."""
    from .datasets.io import read_frames

    need = s.features[0]
    # the frame needs positions only: the paper's own frame (source=file) has no energies or forces
    liquid = read_frames(input_path(cfg, data_key(need.dataset)), energy_key=None, forces_key=None)
    if len(liquid) != 1:
        raise ValueError(f"{need.dataset} must hold one frame, got {len(liquid)}")
    fs = load_features(input_path(cfg, features_key(need.model, need.dataset, need.kind)), liquid)
    if fs.meta["model_config"]["descriptor"] != to_plain(cfg.model.descriptor):
        raise ValueError(f"the features of {need.dataset} were computed with another descriptor than the composed "
                         f"model {cfg.model.name}'s: rerun compute_features")
    return liquid[0], fs.X


def embedding_features(ace, structures: dict[str, list], F: np.ndarray, target: int) -> tuple[dict, dict]:
    """Atom-mean rows of every constructed structure, and the target's feature change in each construction."""
    arrays, check = {}, {}
    for name, group in structures.items():
        n_atoms = np.array([len(a) for a in group])
        # per-atom rows once per structure: their mean is the structure's row of H, atom 0 the target
        A, structure = (F, np.zeros(len(F), dtype=int)) if name == "original" else le_ace.atom_features(ace, group)
        G = np.zeros((len(group), A.shape[1]))
        np.add.at(G, structure, A)
        arrays[f"G_{name}"], arrays[f"n_atoms_{name}"] = G / n_atoms[:, None], n_atoms
        if name not in ("original", "diamond"):  # atom 0 is the target: its features must be the frame's
            X0 = A[np.concatenate([[0], np.cumsum(n_atoms)[:-1]])]
            check[name] = float(np.max(np.abs(X0 - F[target])) / np.max(np.abs(F[target])))
    log.info("target environment kept: max relative feature change %s", check)
    if max(check.values()) > 1e-8:
        raise RuntimeError(f"a construction changed the target's local features: {check}")
    return arrays, check


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


def analyse(cfg: DictConfig) -> dict:
    """The target (lowest LPR of the frame), the structures built around it and its LPR enhancement by each.

    Returns the table and the structures of panel a (the frame, then one carved, periodic,
    high-symmetry and diamond structure).
    """
    import pandas as pd

    check(cfg)
    s, model = typed(cfg.experiment), typed(cfg.model)
    h = covariance(cfg, s)
    frame, F = frame_features(cfg, s)
    lpr = h.lpr(F)
    target = int(np.argmin(lpr))
    log.info("target: atom %d, LPR %.4g (median LPR of the frame %.4g)", target, lpr[target], np.median(lpr))
    structures = build_structures(frame, target, s)
    data, _ = embedding_features(le_ace.descriptor(model), structures, F, target)
    f = F[target][None]
    g_frame = data["G_original"]
    lpr0, pr0 = float(h.lpr(f)[0]), float(h.pr(g_frame)[0])
    records = []
    for strategy in STRATEGIES:
        for n in s.n_added:
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
    table["target_atom"], table["frame_atoms"] = target, len(lpr)
    table["frame_lpr_median"], table["n_covariance"] = float(np.median(lpr)), h.n_rows
    one = table[table["n_added"] == table["n_added"].min()].set_index("strategy")["lpr_enhancement_percent"]
    log.info("LPR enhancement with one structure (%%): %s", one.round(3).to_dict())
    methods = f"H: {h.metadata.get('reference_method', 'unknown')}; frame: {reference_methods([frame])}"
    shown = [frame] + [structures[k][0] for k in ("carving", "periodic", "high_symmetry", "diamond")]
    return {"table": Table(table, methods), "structures": shown}


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
            hs_env[int(atoms.info["n_environment"]):
                   int(atoms.info["n_environment"]) + int(atoms.info["n_hs_environment"])] = True
            colours = [("#d63b3b" if h else c) for h, c in zip(hs_env, colours)]
        plot_atoms(atoms, ax, colors=colours, radii=0.35, rotation="10x,20y,0z", show_unit_cell=2)
        ax.set_title(f"{title}\n{len(atoms)} atoms", fontsize=8)
        ax.set_axis_off()


def plot(cfg: DictConfig):
    """(a) the structures, (b) LPR enhancement with one added structure, (c) against the number added."""
    import matplotlib.pyplot as plt

    t = read_table(input_path(cfg, "table"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.15])
    _draw_structures([fig.add_subplot(grid[0, k]) for k in range(4)], Path(input_path(cfg, "structures")),
                     float(cfg.experiment.environment_radius))
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
    return fig
