"""Figure 9 (Appendix C): LPR of the beads of an MD trajectory that becomes unstable.

The trajectory is a run_md job (:mod:`experiments.md`) of a coarse-grained water MACE model:
the run stops at the first unstable step (beads closer than the protocol's
``stop_min_distance``, a force above ``stop_max_force``, or non-finite numbers) and writes
that frame. The analysis takes the first of ``experiment.trajectories`` that became
unstable, and compares its initial frame with that first unstable frame:

- the LPR of every bead (the calculator's, from H of the model's own force rows), divided by
  the mean LPR of the initial frame (as the paper normalises);
- close contacts: pairs of beads nearer than ``contact_distance`` (the paper: 2.5 A), drawn
  as bonds;
- the LPR of the beads in close contact against all the others, in each frame (the paper's
  claim: markedly lower in contact at the instability).

Outputs: ``table`` (per frame and group: beads, mean / median / minimum normalised LPR),
``points`` (per bead), and ``frames``: both frames as extxyz with ``arrays["lpr"]``
(normalised) and ``arrays["contact"]``, to open coloured in OVITO or the ASE GUI. The
reference the model was trained on is classical all-atom water (not DFT): the figure says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING, DictConfig

from ._stage import input_path, typed
from ._tables import Table, read_table
from .config import ExperimentConfig
from .layout import trajectory_key

log = logging.getLogger(__name__)


@dataclass
class Settings(ExperimentConfig):
    n_snapshots: int = MISSING  # frames shown along the trajectory (the LPR range over the run)
    contact_distance: float = 2.5  # A: beads nearer than this are in close contact (drawn as bonds)


OUTPUTS = {"table": "csv", "points": "csv", "frames": "extxyz"}


def check(cfg: DictConfig) -> None:
    s = typed(cfg.experiment)
    if not s.trajectories or not any(t.runs for t in s.trajectories):
        raise ValueError(f"experiment {s.name}: name at least one trajectory")
    if not s.contact_distance > 0 or s.n_snapshots < 2:
        raise ValueError(f"experiment {s.name}: contact_distance must be > 0 and n_snapshots >= 2, got "
                         f"{s.contact_distance}, {s.n_snapshots}")


def first_unstable(paths: dict[str, str]):
    """(name, frames) of the first trajectory whose last frame is unstable, or an error naming what was read."""
    import ase.io

    seen = []
    for name, path in paths.items():
        frames = ase.io.read(path, ":")
        status = str(frames[-1].info.get("md_status", "?"))
        seen.append(f"{name}: {status} after {frames[-1].info.get('time_ps')} ps")
        if frames[-1].info.get("unstable"):
            return name, frames
    raise ValueError("none of the trajectories became unstable, so Fig 9 has nothing to show: " + "; ".join(seen)
                     + ". Run longer, hotter or with a model trained on fewer frames (experiment.trajectories)")


def analyse(cfg: DictConfig):
    import pandas as pd

    from .cg_structure import close_contacts

    check(cfg)
    s = typed(cfg.experiment)
    paths = {f"{t.md}/{t.model}/{t.dataset}/{r}": input_path(cfg, trajectory_key(t.md, t.model, t.dataset, r))
             for t in s.trajectories for r in t.runs}
    name, traj = first_unstable(paths)
    initial, last = traj[0], traj[-1]
    scale = float(np.mean(initial.arrays["lpr"]))
    rows, points, out = [], [], []
    for label, atoms in (("initial", initial), ("unstable", last)):
        lpr = np.asarray(atoms.arrays["lpr"], dtype=float) / scale
        pairs = close_contacts(atoms, s.contact_distance)
        contact = np.zeros(len(atoms), dtype=bool)
        contact[pairs.ravel()] = True
        for group, mask in (("close contact", contact), ("others", ~contact)):
            values = lpr[mask]
            rows.append(dict(trajectory=name, frame=label, step=int(atoms.info["step"]),
                             time_ps=float(atoms.info["time_ps"]), group=group, n_beads=int(mask.sum()),
                             n_contacts=len(pairs), mean_lpr=float(values.mean()) if len(values) else np.nan,
                             median_lpr=float(np.median(values)) if len(values) else np.nan,
                             min_lpr=float(values.min()) if len(values) else np.nan,
                             md_status=str(atoms.info.get("md_status", ""))))
        points.append(pd.DataFrame(dict(frame=label, bead=np.arange(len(atoms)), lpr=lpr, contact=contact,
                                        x=atoms.positions[:, 0], y=atoms.positions[:, 1], z=atoms.positions[:, 2])))
        copy = atoms.copy()
        copy.calc = None
        copy.arrays["lpr"] = lpr
        copy.arrays["contact"] = contact
        copy.info.update(frame=label, lpr_normalised_by="mean LPR of the initial frame",
                         close_contacts=" ".join(f"{i}-{j}" for i, j in pairs))
        out.append(copy)
        log.info("%s, %s frame (%.3f ps): %d contacts, mean normalised LPR %.3g in contact, %.3g others", name,
                 label, atoms.info["time_ps"], len(pairs), rows[-2]["mean_lpr"], rows[-1]["mean_lpr"])
    lprs = np.array([a.arrays["lpr"] for a in traj])
    idx = np.linspace(0, len(traj) - 1, min(s.n_snapshots, len(traj))).round().astype(int)
    for k in dict.fromkeys(idx):
        v = lprs[k] / scale
        rows.append(dict(trajectory=name, frame="snapshot", step=int(traj[k].info["step"]),
                         time_ps=float(traj[k].info["time_ps"]), group="all", n_beads=len(v), n_contacts=np.nan,
                         mean_lpr=float(v.mean()), median_lpr=float(np.median(v)), min_lpr=float(v.min()),
                         md_status=str(traj[k].info.get("md_status", ""))))
    source = str(traj[0].info.get("reference_method", "?"))  # "MD of <model> run <run>, trained on <reference>"
    return {"table": Table(pd.DataFrame(rows), source), "points": Table(pd.concat(points, ignore_index=True), source),
            "frames": out}


def plot(cfg: DictConfig):
    """Left and middle: beads coloured by normalised LPR (log scale) at the initial and first unstable frame, close
    contacts as bonds; right: LPR of the beads in close contact against the others."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    t, p = read_table(input_path(cfg, "table")), read_table(input_path(cfg, "points"))
    s = typed(cfg.experiment)
    fig = plt.figure(figsize=(13.5, 4.6), constrained_layout=True)
    norm = LogNorm(vmin=max(float(p["lpr"].min()), 1e-6), vmax=float(p["lpr"].max()))
    scatter = None
    for j, label in enumerate(("initial", "unstable")):
        ax = fig.add_subplot(1, 3, j + 1, projection="3d")
        q = p[p["frame"] == label]
        xyz = q[["x", "y", "z"]].to_numpy()
        scatter = ax.scatter(*xyz.T, c=q["lpr"], cmap="viridis", norm=norm, s=28, depthshade=False)
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)  # bonds inside the box only (no periodic images)
        for a, b in zip(*np.nonzero(np.triu(d < s.contact_distance, 1))):
            ax.plot(*xyz[[a, b]].T, color="tab:red", lw=2.0)
        row = t[(t["frame"] == label) & (t["group"] == "close contact")].iloc[0]
        ax.set_title(f"{label} frame, t = {row['time_ps']:.3f} ps\n{int(row['n_contacts'])} contacts < "
                     f"{s.contact_distance} A (red)", fontsize=9)
        ax.set(xticks=[], yticks=[], zticks=[])
    fig.colorbar(scatter, ax=fig.axes, shrink=0.6, label="LPR / mean LPR of the initial frame", location="left")
    ax = fig.add_subplot(1, 3, 3)
    for j, label in enumerate(("initial", "unstable")):
        q = p[p["frame"] == label]
        for k, mask in enumerate((q["contact"], ~q["contact"])):
            v = q["lpr"][mask.astype(bool)]
            x = 2 * j + k + np.random.default_rng(0).uniform(-0.15, 0.15, len(v))
            ax.scatter(x, v, s=8, color="tab:red" if k == 0 else "tab:blue", alpha=0.7)
            if len(v):
                ax.plot([2 * j + k - 0.3, 2 * j + k + 0.3], [np.median(v)] * 2, color="k", lw=1.5)
    ax.set_xticks([0, 1, 2, 3], ["initial:\ncontact", "initial:\nothers", "unstable:\ncontact", "unstable:\nothers"])
    ax.set(yscale="log", ylabel="LPR / mean LPR of the initial frame")
    ax.set_title(f"{t['trajectory'].iloc[0]}\n{t[t['frame'] == 'unstable']['md_status'].iloc[0]}", fontsize=8)
    fig.suptitle(f"Fig. 9: LPR at the onset of an MD instability. {t['reference_method'].iloc[0]} "
                 f"(classical, not DFT); scale: {t['scale'].iloc[0]}", fontsize=9)
    return fig
