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
- ``periodic``: :func:`~rigidity.embedding.periodic_embedding`, the cube of half-width
  ``environment_radius`` + ``buffer`` around the target (``buffer`` 0: the paper's "cube
  tightly containing the local environment") in a periodic cell, buffer atoms displaced by
  N(0, ``sigma``) and kept ``min_distance`` apart;
- ``high_symmetry``: :func:`~rigidity.embedding.high_symmetry_embedding`, the sphere of radius
  ``environment_radius`` + ``buffer`` inserted into a diamond supercell (lattice constant
  ``lattice_constant``); the pure diamond supercell is added too (once, however many embeddings);
- ``diamond``: the pure diamond cell alone (n = 1 only), which the paper's code reports as its
  n = 1 point of the HS curve.

Each embedding is built by every named rule pair of ``constructions`` (column
``construction`` of the table; original, carving and diamond rows are the same structures
under every construction and are repeated so that each construction's rows are complete):

- ``paper`` (the default, the paper's code section_4b/embed_FG.py and embed_SC.py): the
  periodic cell has the fixed edge 2 (r + buffer) + min_distance + 1.5 sigma (8.8 A at r =
  3.75 A, buffer 0, 1 A, 0.2 A), and every diamond site within r + buffer + min_distance +
  1.5 sigma (5.05 A) of the insertion point is removed;
- ``tight`` (the project's first construction): the smallest contact-free periodic cell
  (edge 2 (r + buffer) + k 0.1 A), and diamond sites removed only within r (and within
  min_distance of an inserted atom).

For n in ``n_added``, the table records the target's LPR enhancement
LPR_after / LPR_before - 1: n copies of the frame or of the carved cluster (the same
structure, as in the paper's Fig. 5c), or n embeddings with fresh random buffer
displacements (the k-th embedding of every construction drawn from the same seed). The
environment radius (3.75 A, the paper's r_cut of the embeddings) exceeds the model cutoff
(3.7 A), so every construction keeps the target's model environment exactly; the analysis
checks that its local features are unchanged (to 1e-8 relative) before it computes anything.

The paper's numbers (its Fig. 5b, c and text): the whole frame and the carved cluster
slightly below 0.2 %, one periodic embedding 0.5 %, one HS embedding with the diamond cell
0.8 % (its code's n = 1 point, which is the diamond cell alone: the ``diamond`` row), ten
periodic embeddings 7.7 %; they compare with the rows (``paper``, strategy, 1) and
(``paper``, ``periodic``, 10).

Departures from the paper:

- buffer atoms never enter the target's cutoff sphere (nor the HS centre's): the paper's
  code displaces them freely, so that its embeddings do not contain the target's
  environment exactly (at the paper's frame and settings, 0 to 4 buffer atoms inside 3.7 A
  and up to 6.5 % change of the target's largest LE-ACE feature in 20 draws); keeping them
  out is what the method intends, and is done in both constructions;
- the HS rows at n add n embeddings plus the diamond cell, as the text says; the paper's
  code adds the diamond cell plus n - 1 embeddings (its n = 1 is the ``diamond`` row);
- diamond's lattice constant is ``lattice_constant`` (3.567 A, experiment), the paper's
  Materials Project cell (mp-66) has 3.5607 A;
- ``tight`` rows: the project's earlier constructions, kept for comparison (table column
  ``construction``; columns ``periodic_cell_edge``, ``hs_carve_radius`` and the atom counts
  say what each built);
- the covariance and the frame at the quick scale are the project's offline stand-ins
  (GFN1-xTB carbon structures, a Tersoff liquid frame), not GAP-17 DFT and the paper's MD frame.

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

STRATEGIES = ("original", "carving", "periodic", "high_symmetry", "diamond")
LABELS = {"original": "original structure", "carving": "cluster carving", "periodic": "periodic embedding",
          "high_symmetry": "HS embedding (+ diamond)", "diamond": "diamond cell alone"}
#: what analyse() returns, and the file type of each (results/<scale>/tables/fig5_active_learning.<name>.<ext>)
OUTPUTS = {"table": "csv", "structures": "extxyz"}
COLOURS = {"original": "0.45", "carving": "C1", "periodic": "C0", "high_symmetry": "C3", "diamond": "C2"}
#: values of the construction rules (rigidity.embedding's ``cell`` and ``carve_radius``)
PERIODIC_CELLS = ("paper", "smallest")
HS_CARVE_RADII = ("paper", "cutoff")


@dataclass
class Construction:
    """One way of building the embeddings: the rules of rigidity.embedding."""

    periodic_cell: str = MISSING  # paper: edge 2 (r + buffer) + min_distance + 1.5 sigma | smallest: contact-free
    hs_carve_radius: str = MISSING  # paper: r + buffer + min_distance + 1.5 sigma | cutoff: r | a radius in A


@dataclass
class Settings(ExperimentConfig):
    environment_radius: float = MISSING  # A, radius of the carved sphere and of the environment every embedding keeps
    buffer: float = 0.0  # A, extra half-width of the periodic cube and extra radius of the HS sphere (0: the text's)
    sigma: float = MISSING  # A, standard deviation of buffer-atom displacements
    min_distance: float = MISSING  # A, no two atoms closer in an embedding (the paper's contact distance)
    lattice_constant: float = MISSING  # A, diamond carbon of the high-symmetry embedding
    embedding_seed: int = MISSING  # numpy SeedSequence of the buffer displacements, one child per embedding
    n_added: list[int] = MISSING  # structures added per strategy (panel c)
    constructions: dict[str, Construction] = MISSING  # named rule pairs; the first is drawn in panel a


def _carve_radius(value: str):
    """The ``carve_radius`` argument of a construction: a rule name or a radius in A."""
    return value if value in HS_CARVE_RADII else float(value)


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
    if not s.constructions:
        raise ValueError("experiment.constructions must name at least one construction, got none")
    for name, c in s.constructions.items():
        if c.periodic_cell not in PERIODIC_CELLS:
            raise ValueError(f"experiment.constructions.{name}.periodic_cell must be one of {PERIODIC_CELLS}, "
                             f"got {c.periodic_cell!r}")
        try:
            radius = _carve_radius(c.hs_carve_radius)
        except ValueError:
            raise ValueError(f"experiment.constructions.{name}.hs_carve_radius must be one of {HS_CARVE_RADII} or a "
                             f"radius in A, got {c.hs_carve_radius!r}") from None
        if not isinstance(radius, str) and not radius >= s.environment_radius:
            raise ValueError(f"experiment.constructions.{name}.hs_carve_radius = {radius} A is below "
                             f"experiment.environment_radius = {s.environment_radius} A")
    if len(s.features) != 1 or s.features[0].kind != "atoms" or len(s.hessians) != 1:
        raise ValueError("experiment.features must name the frame's per-atom features and experiment.hessians the "
                         f"one covariance, got {s.features} and {s.hessians}")
    le_ace.check(model)


def build_structures(frame, target: int, s: Settings) -> dict[str, dict[str, list]]:
    """The small structures of every strategy around atom ``target`` of ``frame``, per construction.

    Returns ``{construction: {strategy: [ASE Atoms, ...]}}``; "diamond" holds the
    pure diamond supercell of the construction (the strategy "diamond"). The frame and the carved cluster are the same
    objects under every construction.
    """
    from rigidity.embedding import carve_cluster, high_symmetry_embedding, periodic_embedding

    radius, n = float(s.environment_radius), max(int(k) for k in s.n_added)
    common = dict(sigma=float(s.sigma), min_distance=float(s.min_distance), buffer=float(s.buffer))
    # one seed sequence per strategy, shared by the constructions: the k-th embedding is the same whatever the
    # largest n, and every construction starts its k-th embedding from the same draw
    seeds_periodic, seeds_hs = (q.spawn(n) for q in np.random.SeedSequence(int(s.embedding_seed)).spawn(2))
    cluster = carve_cluster(frame, target, radius)
    out = {}
    for name, c in s.constructions.items():
        periodic = [periodic_embedding(frame, target, radius, rng=np.random.default_rng(seeds_periodic[k]),
                                       cell=c.periodic_cell, **common) for k in range(n)]
        hs = [high_symmetry_embedding(frame, target, radius, lattice_constant=float(s.lattice_constant),
                                      rng=np.random.default_rng(seeds_hs[k]),
                                      carve_radius=_carve_radius(c.hs_carve_radius), **common) for k in range(n)]
        for atoms in periodic + [e for e, _ in hs] + [hs[0][1]]:
            atoms.info["construction"] = name
        out[name] = {"original": [frame], "carving": [cluster], "periodic": periodic,
                     "high_symmetry": [e for e, _ in hs], "diamond": [hs[0][1]]}
    return out


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
    if strategy == "diamond":
        if n != 1:
            raise ValueError(f"the diamond cell alone is one structure, {n} asked for")
        return G[:1], np.ones(1)
    if n > len(G):
        raise ValueError(f"{n} {strategy} structures asked for, {len(G)} built (experiment.n_added)")
    rows = G[:n]
    if strategy == "high_symmetry":  # the pure diamond cell, once
        rows = np.vstack([rows, data["G_diamond"]])
    return rows, np.ones(len(rows))


def _sizes(periodic, hs) -> dict:
    """Cell edge, carve radius and atom counts of one periodic and one HS embedding (table columns)."""
    return dict(periodic_cell_edge=float(periodic.info["cell_edge"]), periodic_atoms=len(periodic),
                periodic_buffer_atoms=int(periodic.info["n_buffer"]), hs_carve_radius=float(hs.info["carve_radius"]),
                hs_supercell=int(hs.info["supercell"]), hs_atoms=len(hs), hs_buffer_atoms=int(hs.info["n_buffer"]))


def construction_features(ace, structures: dict[str, dict[str, list]], F: np.ndarray, target: int):
    """:func:`embedding_features` of every construction; the shared frame and cluster are featurised once."""
    data, checks, shared = {}, {}, {}
    for name, group in structures.items():
        todo = {k: v for k, v in group.items() if k not in shared}
        arrays, check = embedding_features(ace, todo, F, target)
        for k in ("original", "carving"):
            if k in todo:
                shared[k] = {key: arrays[key] for key in (f"G_{k}", f"n_atoms_{k}")}
                if k in check:
                    checks[k] = check.pop(k)
        data[name] = {**{key: v for d in shared.values() for key, v in d.items()}, **arrays}
        checks.update({f"{k}/{name}": v for k, v in check.items()})
    return data, checks


def analyse(cfg: DictConfig) -> dict:
    """The target (lowest LPR of the frame), the structures built around it and its LPR enhancement by each.

    Returns the table (one row per construction, strategy and number added) and the structures
    of panel a: the frame, the carved cluster, then one periodic, one high-symmetry and the
    diamond structure of each construction (the first construction's first).
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
    data, _ = construction_features(le_ace.descriptor(model), structures, F, target)
    f = F[target][None]
    g_frame = next(iter(data.values()))["G_original"]
    lpr0, pr0 = float(h.lpr(f)[0]), float(h.pr(g_frame)[0])
    records = []
    for construction, d in data.items():
        for strategy in STRATEGIES:
            for n in ([1] if strategy == "diamond" else s.n_added):
                rows, weights = added_rows(d, strategy, int(n))
                h1 = h.updated(rows, weights=weights)
                lpr1 = float(h1.lpr(f)[0])
                n_atoms = d[f"n_atoms_{strategy}"]
                atoms = int(n_atoms[0]) * int(n) if len(n_atoms) == 1 else int(n_atoms[: int(n)].sum())
                if strategy == "high_symmetry":
                    atoms += int(d["n_atoms_diamond"][0])
                records.append(dict(construction=construction, strategy=strategy, n_added=int(n), atoms_added=atoms,
                                    lpr_before=lpr0, lpr_after=lpr1,
                                    lpr_enhancement_percent=100.0 * (lpr1 / lpr0 - 1.0),
                                    frame_pr_ratio=float(h1.pr(g_frame)[0]) / pr0))
    table = pd.DataFrame(records)
    built = {name: _sizes(g["periodic"][0], g["high_symmetry"][0]) for name, g in structures.items()}
    for column in next(iter(built.values())):  # what each construction built (its first embedding of each kind)
        table[column] = table["construction"].map({name: b[column] for name, b in built.items()})
    table["target_atom"], table["frame_atoms"] = target, len(lpr)
    table["frame_lpr_median"], table["n_covariance"] = float(np.median(lpr)), h.n_rows
    one = table[table["n_added"] == 1].set_index(["construction", "strategy"])["lpr_enhancement_percent"]
    log.info("LPR enhancement with one structure (%%): %s", one.round(3).to_dict())
    methods = f"H: {h.metadata.get('reference_method', 'unknown')}; frame: {reference_methods([frame])}"
    first = next(iter(structures.values()))
    shown = [frame, first["carving"][0]] + [g[k][0] for g in structures.values()
                                            for k in ("periodic", "high_symmetry", "diamond")]
    return {"table": Table(table, methods), "structures": shown}


def _draw_structures(axes, path: Path, radius: float) -> None:
    """Panel a: the target's neighbourhood in the frame, and the carved, periodic and HS structures.

    The periodic and HS structures are those of the first construction (stored right after the cluster).
    """
    import ase.io
    from ase.visualize.plot import plot_atoms

    frame, cluster, periodic, hs = ase.io.read(path, ":")[:4]
    target = int(cluster.info["centre_index"])
    vectors = frame.get_distances(target, range(len(frame)), mic=True, vector=True)
    d = np.linalg.norm(vectors, axis=1)
    near = frame[np.flatnonzero(d < 2 * radius)]  # the frame is too large to draw whole: 2 r_env around the target,
    near.positions = vectors[d < 2 * radius]  # unwrapped (minimum image)
    near.pbc, near.cell = False, None
    construction = periodic.info.get("construction", "")
    shown = [("original (2 r_env around the target)", near, d[d < 2 * radius] < radius),
             ("cluster carving", cluster, np.ones(len(cluster), bool)),
             (f"periodic embedding ({construction})", periodic, ~periodic.arrays["buffer"]),
             (f"HS embedding ({construction})", hs, ~hs.arrays["buffer"])]
    for ax, (title, atoms, env) in zip(axes, shown):
        colours = np.where(env, "#3b6fd6", "#c8c8c8").tolist()
        colours[0 if title != shown[0][0] else int(np.argmin(d[d < 2 * radius]))] = "#ffd400"
        if atoms is hs:
            hs_env = np.zeros(len(atoms), bool)
            hs_env[int(atoms.info["n_environment"]):
                   int(atoms.info["n_environment"]) + int(atoms.info["n_hs_environment"])] = True
            colours = [("#d63b3b" if h else c) for h, c in zip(hs_env, colours)]
        plot_atoms(atoms, ax, colors=colours, radii=0.35, rotation="10x,20y,0z", show_unit_cell=2)
        ax.set_title(f"{title}\n{len(atoms)} atoms", fontsize=8)
        ax.set_axis_off()


#: strategies whose rows are the same under every construction: drawn once (the diamond cell's mean row is any
#: of its atoms' rows, whatever the supercell)
SHARED = ("original", "carving", "diamond")


def plot(cfg: DictConfig):
    """(a) the structures, (b) LPR enhancement with one added structure, (c) against the number added.

    The first construction is drawn solid, the others hatched (b) or dashed (c).
    """
    import matplotlib.pyplot as plt

    t = read_table(input_path(cfg, "table"))
    scale, reference = t["scale"].iloc[0], t["reference_method"].iloc[0]
    constructions = list(dict.fromkeys(t["construction"]))
    fig = plt.figure(figsize=(13, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.15])
    _draw_structures([fig.add_subplot(grid[0, k]) for k in range(4)], Path(input_path(cfg, "structures")),
                     float(cfg.experiment.environment_radius))
    ax_b, ax_c = fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2:])
    one = t[t["n_added"] == 1].set_index(["construction", "strategy"])["lpr_enhancement_percent"]
    bars = [(s, c) for s in STRATEGIES for c in (constructions[:1] if s in SHARED else constructions)]
    heights = [one.loc[(c, s)] for s, c in bars]
    drawn = ax_b.bar(range(len(bars)), heights, color=[COLOURS[s] for s, _ in bars],
                     hatch=[None if c == constructions[0] else "//" for _, c in bars], edgecolor="k", linewidth=0.5)
    ax_b.bar_label(drawn, fmt="%.3g %%", fontsize=7)
    ax_b.set_xticks(range(len(bars)), [LABELS[s] + ("" if s in SHARED else f"\n({c})") for s, c in bars],
                   fontsize=7, rotation=30, ha="right")
    ax_b.set_ylabel("LPR enhancement of the target atom (%)")
    ax_b.set_title("(b) one added structure (HS: + the diamond cell)", fontsize=9)
    for c in constructions:
        style = "o-" if c == constructions[0] else "s--"
        for s in STRATEGIES:
            if s == "diamond" or (s in SHARED and c != constructions[0]):
                continue
            d = t[(t["strategy"] == s) & (t["construction"] == c)].sort_values("n_added")
            label = LABELS[s] + ("" if s in SHARED else f" ({c})")
            ax_c.plot(d["n_added"], d["lpr_enhancement_percent"], style, color=COLOURS[s], label=label, ms=4)
    ax_c.plot([1], [one.loc[(constructions[0], "diamond")]], "*", color=COLOURS["diamond"], ms=9,
              label=LABELS["diamond"])
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("added structures (original, carving: the same one repeated)")
    ax_c.set_ylabel("LPR enhancement of the target atom (%)")
    ax_c.set_title("(c) LPR enhancement against the number of added structures", fontsize=9)
    ax_c.legend(fontsize=7)
    fig.suptitle(f"Fig. 5: LPR-guided active learning, atom {int(t['target_atom'].iloc[0])} of a "
                 f"{int(t['frame_atoms'].iloc[0])}-atom liquid carbon frame, LE-ACE covariance of "
                 f"{int(t['n_covariance'].iloc[0])} structures; constructions {', '.join(constructions)}."
                 f"\nReference: {reference}; scale: {scale}", fontsize=9)
    return fig
