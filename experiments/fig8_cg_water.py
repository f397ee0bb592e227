"""Figure 8 (Section VI): coarse-grained water MACE models: PR along MD, g(r) and q4 against the all-atom reference.

For each trained model (run ``n<size>-b<k>``: block k of ``size`` training frames, the paper's
``CG_water_train_<size>_<k>``; one train_model job each), its run_md job
(:mod:`experiments.md`, config/md/cg_water_nvt.yaml) runs Langevin dynamics on the library's
live calculator, which records the PR of every saved frame from H of the model's own force
rows (eq. 6 with lambda_E = 0, sigma^2 = 2.5e-11; the accumulate_hessian / merge_hessian jobs
of the same run). The analysis compares, per model:

- **PR**: the trajectory's PR divided by the mean PR of the first ``n_test_frames`` test
  frames (the same H and the same reduction, so the ratio is the paper's "relative PR"),
  raw and as a moving average over ``moving_average_steps`` MD steps (top row);
- **g(r)** of the beads over the trajectory's frames after ``burn_in_ps``, against that of
  the reference's frames (``reference_frames`` of them, evenly spaced; middle row), and the
  integrated absolute difference of the two (:func:`experiments.cg_structure.l1_distance`);
- **q̄4**: the density of the averaged local Steinhardt q4 (Lechner-Dellago, neighbours
  within ``steinhardt.r_max``, kernel bandwidth ``steinhardt.kde_bandwidth``) of the same
  frames against the reference's (bottom row), and their integrated absolute difference;
- the force RMSE of the model on the test frames (the paper quotes its validation error,
  150 -> 145 meV/A from 50 to 10,000 frames), and whether the run stayed stable.

The reference is classical all-atom water (SPC/E by default, config/dataset/cg_water.yaml)
coarse-grained to molecular centres of mass: not DFT and not experiment. The table and the
figure say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from omegaconf import MISSING, DictConfig

from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .layout import data_key, hessian_key, model_key, trajectory_key

log = logging.getLogger(__name__)


@dataclass
class Rdf:
    bins: int = 200  # g(r) histogram bins over [0, r_max]
    r_max: float = 6.0  # A


@dataclass
class Steinhardt:
    l: list[int] = field(default_factory=lambda: [4, 6])  # orders of the local Steinhardt parameters (the figure: 4)
    r_max: float = 3.6  # A, neighbour cutoff
    kde_bandwidth: float = 0.004  # bandwidth of the q_l density estimate
    grid: list[float] = field(default_factory=lambda: [0.0, 0.6])  # q_l range of the density (500 points)


@dataclass
class Settings(ExperimentConfig):
    rdf: Rdf = field(default_factory=Rdf)
    steinhardt: Steinhardt = field(default_factory=Steinhardt)
    n_test_frames: int = MISSING  # test frames whose mean PR is the reference level
    moving_average_steps: int = 200  # MD steps of the moving average of the relative PR (the paper: 200)
    burn_in_ps: float = 0.0  # ps of each trajectory left out of g(r) and q4
    reference_frames: int = 1000  # reference frames (evenly spaced over the dataset) for its g(r) and q4


OUTPUTS = {"table": "csv", "curves": "csv"}

GRID_POINTS = 500


def check(cfg: DictConfig) -> None:
    s = typed(cfg.experiment)
    if s.n_test_frames < 1 or s.reference_frames < 1 or s.moving_average_steps < 1:
        raise ValueError(f"experiment {s.name}: n_test_frames ({s.n_test_frames}), reference_frames "
                         f"({s.reference_frames}) and moving_average_steps ({s.moving_average_steps}) must be >= 1")
    if s.burn_in_ps < 0:
        raise ValueError(f"experiment {s.name}: burn_in_ps must be >= 0, got {s.burn_in_ps}")
    if len(s.steinhardt.grid) != 2 or not s.steinhardt.grid[0] < s.steinhardt.grid[1]:
        raise ValueError(f"experiment {s.name}: steinhardt.grid must be [low, high], got {list(s.steinhardt.grid)}")
    if len(s.trajectories) != 1 or len(s.models) != 1:
        raise ValueError(f"experiment {s.name}: name one models and one trajectories entry (the runs of one model "
                         "on one dataset)")
    if list(s.trajectories[0].runs) != list(s.models[0].runs):
        raise ValueError(f"experiment {s.name}: trajectories runs {list(s.trajectories[0].runs)} must be the models "
                         f"runs {list(s.models[0].runs)}")


def size_and_block(run: str) -> tuple[int, int]:
    from .runs import parse_run

    key = parse_run(run)
    if key.size is None or key.block is None:
        raise ValueError(f"run {run}: Fig 8's runs are n<size>-b<k> (block k of size frames)")
    return int(key.size), int(key.block)


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def llpr_of(cfg: DictConfig, model: str, dataset: str, run: str, frames):
    """The model of a run and its LLPR with H from the run's merged Hessian file."""
    from rigidity import Hessian

    from .models._network import llpr_with, trained

    net = trained(input_path(cfg, model_key(model, dataset, run)), frames)
    hessian = Hessian.load(input_path(cfg, hessian_key(model, dataset, run)))
    return net, llpr_with(net.last_layer(), net.config, hessian)


def test_errors(llpr, test) -> tuple[np.ndarray, float]:
    """PR of each test frame (the calculator's: summed features) and the force RMSE (eV/A) on them."""
    ll = llpr.last_layer
    out = ll.evaluate(test, batch_size=4)
    structure = out["structure"]
    g = np.zeros((len(test), ll.n_features))
    np.add.at(g, structure, out["phi"])
    pr = 1.0 / np.asarray(llpr.hessian.variance(g))
    reference = np.concatenate([a.arrays["forces"] for a in test])
    rmse = float(np.sqrt(np.mean((np.asarray(out["forces"]) - reference) ** 2)))
    return pr, rmse


#: disjoint windows of the reference trajectory whose g(r) and q4 give the distances that sampling alone makes
NOISE_WINDOWS = 4


def noise_floor(frames, window_ps: float, s, r, g_ref, grid, q_ref, q_l) -> list[dict]:
    """The distances of g(r) and q4 from the reference's that a run as short as the trajectories has from sampling
    alone: those of ``NOISE_WINDOWS`` windows of ``window_ps`` of the reference trajectory itself (its frames in
    time order, evenly spaced over it), each against the whole reference."""
    from . import cg_structure as cs

    order = sorted(frames, key=lambda a: float(a.info["time_ps"]))
    t = np.array([float(a.info["time_ps"]) for a in order])
    starts = np.linspace(t[0], max(t[-1] - window_ps, t[0]), NOISE_WINDOWS)
    rows = []
    for k, t0 in enumerate(starts):
        part = [a for a, ti in zip(order, t) if t0 <= ti <= t0 + window_ps]
        if not part:
            continue
        _, g = cs.pair_correlation(part, s.rdf.bins, s.rdf.r_max)
        q = cs.density(cs.steinhardt(part, q_l, s.steinhardt.r_max, average=True).ravel(), grid,
                       s.steinhardt.kde_bandwidth)
        rows.append(dict(model="reference", run=f"reference window {k}", n_frames=len(part),
                         frames_analysed=len(part), trajectory_ps=float(window_ps),
                         gr_l1=cs.l1_distance(r, g, g_ref), q4_l1=cs.l1_distance(grid, q, q_ref)))
    return rows


def analyse(cfg: DictConfig) -> dict[str, Table]:
    import ase.io
    import pandas as pd

    from . import cg_structure as cs
    from .datasets.io import read_frames
    from .models._network import subset

    check(cfg)
    s = typed(cfg.experiment)
    need, traj_need = s.models[0], s.trajectories[0]
    frames = read_frames(input_path(cfg, data_key(need.dataset)), energy_key=None, forces_key=None)
    test = subset(frames, "test", s.n_test_frames)
    every = max(len(frames) // s.reference_frames, 1)
    reference = frames[::every][: s.reference_frames]
    grid = np.linspace(*s.steinhardt.grid, GRID_POINTS)
    q_l = 4 if 4 in s.steinhardt.l else int(s.steinhardt.l[0])
    r, g_ref = cs.pair_correlation(reference, s.rdf.bins, s.rdf.r_max)
    q_ref = cs.density(cs.steinhardt(reference, q_l, s.steinhardt.r_max, average=True).ravel(), grid,
                       s.steinhardt.kde_bandwidth)
    curves = [pd.DataFrame(dict(run="reference", kind="g(r)", x=r, y=g_ref)),
              pd.DataFrame(dict(run="reference", kind=f"q{q_l}", x=grid, y=q_ref))]
    rows = []
    method = str(test[0].info.get("reference_method", "classical all-atom water"))
    for run in need.runs:
        size, block = size_and_block(run)
        net, llpr = llpr_of(cfg, need.model, need.dataset, run, frames)
        pr_test, rmse = test_errors(llpr, test)
        traj = ase.io.read(input_path(cfg, trajectory_key(traj_need.md, need.model, need.dataset, run)), ":")
        step = np.array([a.info["step"] for a in traj])
        time_ps = np.array([a.info["time_ps"] for a in traj])
        rel = np.array([a.info["pr"] for a in traj]) / pr_test.mean()
        stride = int(np.median(np.diff(step))) if len(step) > 1 else 1
        smooth = moving_average(rel, max(1, round(s.moving_average_steps / max(stride, 1))))
        status = str(traj[-1].info.get("md_status", "?"))
        kept = [a for a, t in zip(traj, time_ps) if t >= s.burn_in_ps]
        _, g = cs.pair_correlation(kept, s.rdf.bins, s.rdf.r_max)
        q = cs.density(cs.steinhardt(kept, q_l, s.steinhardt.r_max, average=True).ravel(), grid,
                       s.steinhardt.kde_bandwidth)
        curves += [pd.DataFrame(dict(run=run, kind="pr", x=time_ps, y=rel)),
                   pd.DataFrame(dict(run=run, kind="pr_moving_average", x=time_ps, y=smooth)),
                   pd.DataFrame(dict(run=run, kind="g(r)", x=r, y=g)),
                   pd.DataFrame(dict(run=run, kind=f"q{q_l}", x=grid, y=q))]
        rows.append(dict(model=need.model, run=run, train_size=size, subset=block, n_train=len(net.rows),
                         epochs=net.meta.get("epochs"), test_force_rmse=rmse * 1000.0, test_mean_pr=pr_test.mean(),
                         trajectory_ps=float(time_ps[-1]), n_frames=len(traj), frames_analysed=len(kept),
                         mean_relative_pr=float(rel.mean()), final_relative_pr=float(smooth[-1]),
                         min_relative_pr=float(rel.min()), gr_l1=cs.l1_distance(r, g, g_ref),
                         q4_l1=cs.l1_distance(grid, q, q_ref), stable=status == "completed", md_status=status,
                         min_distance=float(min(a.info["min_distance"] for a in traj))))
        log.info("%s: test force RMSE %.1f meV/A, mean relative PR %.3f, g(r) L1 %.3f A, q4 L1 %.3f, %s", run,
                 1000 * rmse, rel.mean(), rows[-1]["gr_l1"], rows[-1]["q4_l1"], status)
    rows += noise_floor(frames, max(r["trajectory_ps"] for r in rows) - s.burn_in_ps, s, r, g_ref, grid, q_ref, q_l)
    table = pd.DataFrame(rows).sort_values(["train_size", "subset"], kind="stable", na_position="last")
    source = f"{method} (classical force field: not DFT, not experiment)"
    return {"table": Table(table, source), "curves": Table(pd.concat(curves, ignore_index=True), source)}


# -- figure -------------------------------------------------------------------------------------------------------
def plot(cfg: DictConfig):
    """Columns: training-set sizes. Rows: relative PR along the trajectories, g(r), q4 density (reference in black)."""
    import matplotlib.pyplot as plt

    t, c = read_table(input_path(cfg, "table")), read_table(input_path(cfg, "curves"))
    floor = t[t["model"] == "reference"]
    t = t[t["model"] != "reference"]
    sizes = sorted(set(int(v) for v in t["train_size"]))
    qkind = next(k for k in dict.fromkeys(c["kind"]) if str(k).startswith("q"))
    fig, axes = plt.subplots(3, len(sizes), figsize=(3.6 * len(sizes), 8.4), constrained_layout=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ref = c[c["run"] == "reference"]
    for j, size in enumerate(sizes):
        runs = t[t["train_size"] == size]
        for k, (_, row) in enumerate(runs.iterrows()):
            colour = colours[k % len(colours)]
            mine = c[c["run"] == row["run"]]
            raw, avg = mine[mine["kind"] == "pr"], mine[mine["kind"] == "pr_moving_average"]
            label = f"b{int(row['subset'])}" + ("" if row["stable"] else " (unstable)")
            axes[0, j].plot(raw["x"], raw["y"], color=colour, alpha=0.3, lw=0.6)
            axes[0, j].plot(avg["x"], avg["y"], color=colour, lw=1.4, label=label)
            gr = mine[mine["kind"] == "g(r)"]
            axes[1, j].plot(gr["x"], gr["y"], color=colour, lw=1.0, label=f"{label}: L1 {row['gr_l1']:.3f} A")
            q = mine[mine["kind"] == qkind]
            axes[2, j].plot(q["x"], q["y"], color=colour, lw=1.0, label=f"{label}: L1 {row['q4_l1']:.3f}")
        axes[0, j].axhline(1.0, color="tab:red", lw=1.0, label="test-set mean")
        g_ref, q_ref = ref[ref["kind"] == "g(r)"], ref[ref["kind"] == qkind]
        noise = ("", "")
        if len(floor):  # the distances that sampling alone gives a run this short
            noise = (f" (its windows: L1 {floor['gr_l1'].mean():.3f} A)",
                     f" (its windows: L1 {floor['q4_l1'].mean():.3f})")
        axes[1, j].plot(g_ref["x"], g_ref["y"], color="k", lw=1.4, ls="--", label="all-atom reference" + noise[0])
        axes[2, j].plot(q_ref["x"], q_ref["y"], color="k", lw=1.4, ls="--", label="all-atom reference" + noise[1])
        rmse = ", ".join(f"{v:.0f}" for v in runs["test_force_rmse"])
        axes[0, j].set_title(f"{size} training frames\ntest force RMSE {rmse} meV/A", fontsize=9)
        axes[0, j].set(xlabel="time, ps", ylabel="PR / mean test PR")
        axes[1, j].set(xlabel="r, A", ylabel="g(r)")
        axes[2, j].set(xlabel=f"average local Steinhardt {qkind}", ylabel="density")
        q_all = c[(c["kind"] == qkind) & (c["y"] > 1e-3 * c[c["kind"] == qkind]["y"].max())]["x"]
        if len(q_all):
            axes[2, j].set_xlim(float(q_all.min()) - 0.01, float(q_all.max()) + 0.01)
        for ax, where in zip(axes[:, j], ("best", "upper right", "upper right")):
            ax.legend(fontsize=6.5, frameon=False, loc=where)
    scale = t["scale"].iloc[0]
    fig.suptitle(f"Fig. 8: coarse-grained water MACE, MD against the all-atom reference; scale: {scale}\n"
                 f"{t['reference_method'].iloc[0]}", fontsize=8)
    return fig
