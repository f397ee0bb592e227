"""MACE through mace-torch 0.3.16 (Figs 1-2 on Si clusters; Figs 8-9 on coarse-grained water): config schema and
training by mace-torch's own ``mace_run_train``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

from ._network import NetworkConfig


@dataclass
class Optimizer:
    batch_size: int = 10  # structures per batch
    patience: int = 100  # epochs without validation improvement before stopping
    ema: bool = True  # exponential moving average of the weights
    eval_interval: int | None = 1  # epochs between validation passes (mace's --eval_interval; the model kept is the
    # best evaluated one); null: the first and the last epoch only (max_epochs - 1), so the last is always evaluated


@dataclass
class Config(NetworkConfig):
    r_max: float = MISSING  # A, radial cutoff
    hidden_irreps: str = MISSING  # node features, e.g. 128x0e+128x1o
    correlation: int = 3  # body order of the symmetric contraction minus one
    max_ell: int = 3  # largest spherical harmonic
    activation: str | None = None  # non-linearity of the gates and readout (null: mace-torch's default)
    loss: str = "energy_forces"  # energy_forces | forces (force matching, no energy target)
    forces_weight: float = 100.0  # weight of the force term of energy_forces (mace-torch's default; energies: 1)
    E0: Any = None  # eV per atom: a number, "isolated_atom_energy" (the dataset's info key), or null (none)
    last_layer_features: int | None = None  # expected number of last-layer features (a check), e.g. 144
    frame_passes: int | None = None  # when set, max_epochs = ceil(frame_passes / training frames): every training-set
    # size trains as long, in structures seen (the quick scale of Figs 8-9); null: max_epochs for every size
    dtype: str = "float64"  # training precision (mace's --default_dtype; the rigidities are computed in float64)
    optimizer: Optimizer = field(default_factory=Optimizer)


# -- training (rule train_model) -----------------------------------------------------------------------------
#: mace-torch's weighted loss: energies per atom, each term a mean over its batch (what the LLPR must know)
LOSS_WEIGHTS = {"energy_forces": {"energy_weight": 1.0, "forces_weight": 100.0},
                "forces": {"energy_weight": 0.0, "forces_weight": 1.0}}


def loss_weights(model: Config) -> dict[str, float]:
    """The weights of mace's loss terms for a model config (energy_forces: 1 and ``forces_weight``)."""
    if model.loss not in LOSS_WEIGHTS:
        raise ValueError(f"model {model.name}: loss {model.loss!r} is not one of {list(LOSS_WEIGHTS)}")
    weights = dict(LOSS_WEIGHTS[model.loss])
    if model.loss == "energy_forces":
        if not model.forces_weight >= 0:
            raise ValueError(f"model {model.name}: forces_weight must be >= 0, got {model.forces_weight}")
        weights["forces_weight"] = float(model.forces_weight)
    return weights


def epochs(model: Config, n_train: int) -> int:
    """Training epochs for ``n_train`` structures: ``max_epochs``, or ``ceil(frame_passes / n_train)``."""
    if model.frame_passes is None:
        return int(model.max_epochs)
    if not (isinstance(model.frame_passes, int) and model.frame_passes >= 1):
        raise ValueError(f"model {model.name}: frame_passes must be an integer >= 1 or null, got "
                         f"{model.frame_passes!r}")
    return max(1, math.ceil(model.frame_passes / max(n_train, 1)))


def _eval_interval(model: Config, n_train: int) -> int:
    if model.optimizer.eval_interval is None:
        return max(epochs(model, n_train) - 1, 1)
    if model.optimizer.eval_interval < 1:
        raise ValueError(f"model {model.name}: optimizer.eval_interval must be >= 1 or null, got "
                         f"{model.optimizer.eval_interval}")
    return int(model.optimizer.eval_interval)


def _labelled(frames, path: Path, energies: bool) -> None:
    """Write structures for mace_run_train with its REF_ keys (ASE would hide plain 'energy' in a calculator)."""
    import ase.io

    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = None
        copy.info = {k: v for k, v in atoms.info.items() if k in ("subset", "n_atoms")}
        if energies:
            copy.info["REF_energy"] = float(atoms.info["energy"])
        copy.arrays["REF_forces"] = np.asarray(atoms.arrays["forces"], dtype=float)
        for key in ("forces", "energies"):
            copy.arrays.pop(key, None)
        out.append(copy)
    ase.io.write(path, out, format="extxyz")


def _e0s(model: Config, frames) -> dict[int, float] | None:
    """The E0s mace_run_train is given: the config's, none (mace's "average" of the training energies), or 0 per
    species for a forces-only loss: without energies the energy is defined up to a constant, and mace's "average"
    of no energies would make every predicted energy NaN."""
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    if model.E0 is None:
        return {z: 0.0 for z in species} if model.loss == "forces" else None
    if isinstance(model.E0, str):
        values = {float(atoms.info[model.E0]) for atoms in frames if model.E0 in atoms.info}
        if len(values) != 1:
            raise ValueError(f"model {model.name}: E0 {model.E0!r} should name one info value of the dataset, found "
                             f"{sorted(values)[:5]}")
        (value,) = values
        if len(species) != 1:
            raise ValueError(f"model {model.name}: one E0 {model.E0!r} for species {species}: give one per element")
        return {species[0]: value}
    return {z: float(model.E0) for z in species}


def command(model: Config, workdir: Path, seed: int, e0s: dict | None, has_valid: bool, device: str,
            n_train: int) -> list[str]:
    """The mace_run_train command line of a model config (what the trained model's manifest records).

    The batch size is capped at the training-set size: mace drops incomplete batches.
    """
    import shutil
    import sys

    exe = shutil.which("mace_run_train", path=str(Path(sys.executable).parent)) or "mace_run_train"
    loss = loss_weights(model)
    cmd = [exe, "--name", "model", "--train_file", str(workdir / "train.xyz"),
           "--model", "MACE", "--hidden_irreps", model.hidden_irreps, "--r_max", str(model.r_max),
           "--correlation", str(model.correlation), "--max_ell", str(model.max_ell), "--num_interactions", "2",
           "--MLP_irreps", "16x0e", "--batch_size", str(min(model.optimizer.batch_size, n_train)),
           "--max_num_epochs", str(epochs(model, n_train)), "--patience", str(model.optimizer.patience),
           "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--device", device,
           "--default_dtype", model.dtype, "--seed", str(seed), "--work_dir", str(workdir),
           "--loss", "weighted" if model.loss == "energy_forces" else "forces_only",
           "--energy_weight", str(loss["energy_weight"]), "--forces_weight", str(loss["forces_weight"]),
           "--eval_interval", str(_eval_interval(model, n_train)), "--save_cpu"]
    cmd += ["--valid_file", str(workdir / "valid.xyz")] if has_valid else ["--valid_fraction", "0.1"]
    cmd += ["--E0s", repr(e0s)] if e0s is not None else ["--E0s", "average"]
    if model.optimizer.ema:
        cmd += ["--ema"]
    if model.activation is not None:
        cmd += ["--gate", model.activation]
    return cmd


def train(model: Config, frames, rows, key, cfg) -> dict[str, Any]:
    """Train with mace-torch's own ``mace_run_train`` on the run's structures; the manifest of the model written.

    The model goes to ``model.model`` beside the manifest (``cfg.output``); the validation
    set is the dataset's ``subset == "validation"`` structures (else mace's 10 % split).
    """
    import os
    import subprocess
    import sys
    import tempfile

    import torch

    from .._results import frames_fingerprint, reference_methods
    from ..config import to_plain
    from ._network import training_setup

    # without a validation subset, mace's own 10 % split of the training structures
    out_dir, train_frames, valid, seed = training_setup(model, frames, rows, key, cfg)
    energies = model.loss != "forces"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    e0s = _e0s(model, frames)
    with tempfile.TemporaryDirectory(prefix=".mace-", dir=out_dir) as tmp:
        work = Path(tmp)
        _labelled(train_frames, work / "train.xyz", energies)
        if valid:
            _labelled(valid, work / "valid.xyz", energies)
        cmd = command(model, work, seed, e0s, bool(valid), device, len(train_frames))
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
        sys.stdout.write(done.stdout)  # mace's own log (its losses and errors per epoch) into the job's log
        sys.stdout.flush()
        if done.returncode != 0:
            raise RuntimeError(f"mace_run_train failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        trained = work / "model.model"
        if not trained.is_file():
            raise RuntimeError(f"mace_run_train wrote no model.model in {work}: {sorted(os.listdir(work))}")
        os.replace(trained, out_dir / "model.model")
    from rigidity.last_layer import MACELastLayer

    ll = MACELastLayer(load(out_dir / "model.model"))
    if model.last_layer_features is not None and ll.n_features != model.last_layer_features:
        raise RuntimeError(f"model {model.name}: {ll.n_features} last-layer features, the config expects "
                           f"{model.last_layer_features}")
    return dict(model=model.name, package="mace-torch", file="model.model", n_train=len(train_frames),
                n_valid=len(valid), seed=seed, device=device, epochs=epochs(model, len(train_frames)),
                last_layer_features=ll.n_features,
                loss=dict(kind=model.loss, per_atom_energy=True, reduction="mean", **loss_weights(model)),
                E0s={str(z): v for z, v in (e0s or {}).items()}, fingerprint=frames_fingerprint(train_frames),
                reference_method=reference_methods(train_frames), model_config=to_plain(cfg.model),
                command=[Path(c).name if i == 0 else c for i, c in enumerate(command(model, Path("."), seed, e0s,
                                                                                        bool(valid), device,
                                                                                        len(train_frames)))])


def load(path):
    """A trained model file (``model.model``) as mace-torch saved it, in float64."""

    from rigidity.last_layer.cli import _torch_load

    return _torch_load(Path(path)).double()
