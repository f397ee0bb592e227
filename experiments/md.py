"""Stage "run_md": one MD trajectory of a trained network, with its PR and LPR at every saved frame (Figs 8-9).

    python -m experiments.md md=<protocol> model=<network> dataset=<d> run=<run key> \
        inputs='{data/<d>: <extxyz>, models/<m>/<d>/<run>: <manifest>, hessians/<m>/<d>/<run>: <npz>}' \
        output=<trajectory extxyz>

The dynamics run on the library's live calculator, :class:`rigidity.last_layer.RigidityCalculator`:
energies and forces from the network's last-layer adapter (one forward and one backward pass per
step) and, at every step, the PR of the structure and the LPR of every atom from H of the model's
own training rows (the accumulate_hessian / merge_hessian jobs of the same run key: for the
coarse-grained water of Figs 8-9, the force rows of its training frames, sigma^2 = 2.5e-11).

Protocol (config/md/*.yaml): ASE's Langevin integrator at ``temperature`` with ``friction``
(1/fs), Maxwell-Boltzmann velocities (centre-of-mass motion removed), both from ``seed``,
starting from structure ``start_index`` of the dataset's ``start_subset`` structures (file
order). A frame is written every ``stride`` steps, with ``info``: step, time_ps, temperature_K,
pr, energy_uncertainty, energy, min_distance (A, minimum image), max_force (eV/A); ``arrays``:
lpr, forces. The PR is the calculator's (the summed features' g^T H^-1 g); the paper's PR of
the mean bead features is N^2 times it for a structure of N beads, which is why trajectories
are compared with test structures of the same size through ratios.

Instability: a step whose smallest bead distance falls below ``stop_min_distance`` (A) or
whose largest force exceeds ``stop_max_force`` (eV/A), or whose energy or forces are not
finite, stops the run; that frame is written too, with ``info["unstable"] = True``, and
every frame records ``info["md_status"]`` (``running``; the last ``completed`` or
``unstable: <why>``). An unstable run is a result, not a failed job.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from omegaconf import MISSING, DictConfig

from .cg_structure import min_distance  # the smallest minimum-image bead distance (A)

__all__ = ["MDConfig", "run", "instability"]

log = logging.getLogger(__name__)


@dataclass
class MDConfig:
    name: str = MISSING  # the protocol's config name: results/<scale>/trajectories/<name>/...
    integrator: str = "langevin"  # ASE Langevin dynamics
    timestep: float = MISSING  # fs
    temperature: float = MISSING  # K
    friction: float = MISSING  # 1/fs, Langevin friction
    n_steps: int = MISSING  # steps per trajectory
    stride: int = MISSING  # steps between saved frames
    seed: int = 0  # seed of the Langevin noise and the initial velocities
    start_subset: str = "test"  # the start structure is one of the dataset's structures with this info subset
    start_index: int = 0  # ... the start_index-th of them in file order
    stop_min_distance: float = 1.8  # A: a smaller bead-bead distance stops the run as unstable
    stop_max_force: float = 10.0  # eV/A: a larger force on one bead stops the run as unstable


def _check(md: MDConfig) -> None:
    if md.integrator != "langevin":
        raise ValueError(f"md {md.name}: integrator {md.integrator!r} is not one this stage runs (langevin)")
    for key in ("timestep", "temperature", "friction", "stop_min_distance", "stop_max_force"):
        value = getattr(md, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"md {md.name}: {key} must be a finite number > 0, got {value!r}")
    for key in ("n_steps", "stride"):
        if not (isinstance(getattr(md, key), int) and getattr(md, key) >= 1):
            raise ValueError(f"md {md.name}: {key} must be an integer >= 1, got {getattr(md, key)!r}")
    if md.start_index < 0:
        raise ValueError(f"md {md.name}: start_index must be >= 0, got {md.start_index}")


def instability(atoms, forces, energy, stop_min_distance: float, stop_max_force: float) -> str | None:
    """Why a configuration counts as unstable (non-finite energy or forces, beads closer than
    ``stop_min_distance``, a force above ``stop_max_force``), or None."""
    if not np.all(np.isfinite(forces)):
        return "non-finite forces"
    if not np.isfinite(energy):
        return "a non-finite energy"
    r = min_distance(atoms)
    if r < stop_min_distance:
        return f"beads {r:.3f} A apart (< stop_min_distance {stop_min_distance} A)"
    f = float(np.linalg.norm(forces, axis=1).max())
    if f > stop_max_force:
        return f"a force of {f:.2f} eV/A (> stop_max_force {stop_max_force} eV/A)"
    return None


def _record(atoms, step: int, timestep: float, status: str) -> None:
    forces = atoms.calc.results["forces"]
    atoms.info.update(step=int(step), time_ps=step * timestep / 1000.0, temperature_K=float(atoms.get_temperature()),
                      energy=float(atoms.calc.results["energy"]), min_distance=min_distance(atoms),
                      max_force=float(np.linalg.norm(forces, axis=1).max()), md_status=status)
    atoms.arrays["forces"] = np.asarray(forces, dtype=float).copy()


def _snapshot(atoms):
    copy = atoms.copy()
    copy.calc = None
    copy.set_constraint()
    return copy


def simulate(md: MDConfig, llpr, start, label: str = "") -> list:
    """The saved frames of one Langevin run of ``start`` on ``llpr``'s model (see the module docstring)."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from rigidity.last_layer import RigidityCalculator

    _check(md)
    atoms = start.copy()
    atoms.info = {k: v for k, v in start.info.items() if k in ("dataset", "scale", "bead")}
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions", "masses"):
            del atoms.arrays[key]
    atoms.calc = RigidityCalculator(llpr)
    rng = np.random.default_rng(md.seed)
    thermalize_momenta(atoms, temperature_K=md.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())  # no drift of the centre of mass (ASE's replacement of Langevin's fixcm)
    dyn = Langevin(atoms, md.timestep * units.fs, temperature_K=md.temperature, friction=md.friction / units.fs,
                   rng=rng, fixcm=False)
    frames = []
    atoms.get_forces()
    _record(atoms, 0, md.timestep, "running")
    frames.append(_snapshot(atoms))
    why = None
    step = 0
    while step < md.n_steps:
        dyn.run(1)
        step += 1
        res = atoms.calc.results
        why = instability(atoms, res["forces"], res["energy"], md.stop_min_distance, md.stop_max_force)
        if why is not None or step % md.stride == 0 or step == md.n_steps:
            _record(atoms, step, md.timestep, "running")
            if why is not None:
                atoms.info["unstable"] = True
            frames.append(_snapshot(atoms))
        if why is not None:
            log.warning("%s: unstable at step %d (%.3f ps): %s", label, step, step * md.timestep / 1000, why)
            break
        if step % max(md.n_steps // 10, 1) == 0:
            log.info("%s: step %d of %d, T %.0f K, PR %.3g, min distance %.2f A", label, step, md.n_steps,
                     atoms.get_temperature(), atoms.info["pr"], min_distance(atoms))
    frames[-1].info["md_status"] = "completed" if why is None else f"unstable: {why}"
    return frames


def run(cfg: DictConfig) -> list:
    from ._stage import input_path, typed
    from .data import dataset_config
    from .datasets.io import read_frames
    from .layout import data_key, hessian_key, model_key
    from .models._network import llpr_with, subset, trained

    if cfg.get("model") is None or cfg.get("md") is None or not cfg.get("run"):
        raise ValueError("run_md needs md=<protocol>, model=<network>, dataset=<name> and run=<run key>")
    md = typed(cfg.md)
    _check(md)
    ds = dataset_config(cfg)
    model = typed(cfg.model)
    if model.kind != "network":
        raise ValueError(f"model {model.name} is {model.kind}: MD runs on a trained network")
    from rigidity import Hessian

    frames = read_frames(input_path(cfg, data_key(ds.name)), energy_key=None, forces_key=None)
    net = trained(input_path(cfg, model_key(model.name, ds.name, str(cfg.run))), frames)
    hessian = Hessian.load(input_path(cfg, hessian_key(model.name, ds.name, str(cfg.run))))
    if hessian.metadata.get("rows") != str(cfg.run) or hessian.metadata.get("model") != model.name:
        raise ValueError(f"the Hessian file is of model {hessian.metadata.get('model')!r}, rows "
                         f"{hessian.metadata.get('rows')!r}, not of {model.name} run {cfg.run}")
    llpr = llpr_with(net.last_layer(), net.config, hessian)
    starts = subset(frames, md.start_subset)
    if md.start_index >= len(starts):
        raise ValueError(f"md {md.name}: start_index {md.start_index}, but the dataset has {len(starts)} structures "
                         f"of subset {md.start_subset!r}")
    out = simulate(md, llpr, starts[md.start_index], label=f"{model.name}/{ds.name}/{cfg.run}")
    for atoms in out:
        atoms.info.update(md=md.name, model=model.name, run=str(cfg.run), timestep_fs=float(md.timestep),
                          reference_method=f"MD of {model.name} run {cfg.run}, trained on "
                                           f"{net.meta.get('reference_method')}")
    log.info("%s run %s: %d frames, %s", model.name, cfg.run, len(out), out[-1].info["md_status"])
    return out


def _write(cfg: DictConfig) -> None:
    import ase.io

    from ._results import atomic_path

    if not cfg.get("output"):
        raise ValueError("pass output=<path of the trajectory extxyz to write>")
    frames = run(cfg)
    with atomic_path(cfg.output) as tmp:
        ase.io.write(tmp, frames, format="extxyz")


if __name__ == "__main__":
    from ._stage import entry_point

    entry_point(_write)()
