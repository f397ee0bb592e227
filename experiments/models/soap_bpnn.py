"""SOAP-BPNN through metatrain 2026.4.1's soap_bpnn (Figs 1-3): config schema and training by metatrain's own
``train_model`` (what ``mtt train`` runs).

The paper's SOAP (rascaline: GTO radial basis on Gaussian-smeared densities) differs from metatrain
2026.4.1's (torch-spex: Laplacian-eigenstate radial basis on point densities): the cutoff, n_max and
l_max carry over, the Gaussian width has no counterpart and must stay null.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._network import NetworkConfig


@dataclass
class Soap:
    cutoff: float = 5.0  # A, SOAP radial cutoff (metatrain: soap.cutoff.radius)
    cutoff_width: float = 0.5  # A, width of the shifted-cosine cutoff (soap.cutoff.width; metatrain's default)
    max_radial: int = 9  # n_max, radial basis functions (soap.max_radial)
    max_angular: int = 9  # l_max, spherical harmonics (soap.max_angular)
    atomic_gaussian_width: float | None = None  # A, density smearing: none in metatrain 2026.4.1 (must be null)


@dataclass
class Optimizer:
    lr: float = 1.0e-3  # Adam learning rate (metatrain: training.learning_rate)
    batch_size: int = 32  # structures per batch (the paper's SOAP_BPNN_train.yaml), capped at the training set


@dataclass
class Config(NetworkConfig):
    soap: Soap = field(default_factory=Soap)
    hidden_layers: list[int] = field(default_factory=lambda: [64, 64])  # neurons per hidden layer (all equal)
    target: str = "energy_per_atom"  # energy_per_atom (the paper's: loss on E / n_atoms) | energy (per structure)
    dtype: str = "float64"  # training precision: float64 | float32 (metatrain's base_precision)
    # metatrain epochs (0-based: epoch e is the model after e + 1 passes) whose models are kept (Fig 3a), by the runs
    # of checkpoint_runs only: metatrain writes a checkpoint every gcd(epochs) epochs, the others are discarded
    checkpoint_epochs: list[int] = field(default_factory=list)
    checkpoint_runs: list[str] = field(default_factory=list)  # run keys that keep checkpoint_epochs (others: none)
    optimizer: Optimizer = field(default_factory=Optimizer)


TARGETS = ("energy_per_atom", "energy")
PRECISION = {"float64": 64, "float32": 32}
ENERGY_KEY = "REF_energy"  # info key of the energies metatrain reads (ASE would hide a plain 'energy' in a calculator)


def check(model: Config) -> None:
    """Refuse settings metatrain's soap_bpnn cannot honour, naming the value."""
    if model.soap.atomic_gaussian_width is not None:
        raise ValueError(f"model {model.name}: soap.atomic_gaussian_width={model.soap.atomic_gaussian_width}: "
                         "metatrain 2026.4.1's SOAP (torch-spex, Laplacian eigenstates on point densities) has no "
                         "density smearing; set it to null")
    layers = list(model.hidden_layers)
    if not layers or len(set(layers)) != 1 or layers[0] < 1:
        raise ValueError(f"model {model.name}: hidden_layers={layers}: metatrain's BPNN has one or more hidden "
                         "layers of one width (num_hidden_layers x num_neurons_per_layer)")
    if model.target not in TARGETS:
        raise ValueError(f"model {model.name}: target {model.target!r} is not one of {TARGETS}")
    if model.dtype not in PRECISION:
        raise ValueError(f"model {model.name}: dtype {model.dtype!r} is not one of {sorted(PRECISION)}")
    epochs = list(model.checkpoint_epochs)
    if any(e < 0 for e in epochs) or len(set(epochs)) != len(epochs):
        raise ValueError(f"model {model.name}: checkpoint_epochs={epochs} must be distinct epochs >= 0 (metatrain "
                         "counts from 0)")
    if list(model.checkpoint_runs) and not epochs:
        raise ValueError(f"model {model.name}: checkpoint_runs={list(model.checkpoint_runs)} keep no checkpoint: "
                         "checkpoint_epochs is empty")


def checkpoint_interval(model: Config, run: str) -> int | None:
    """Every how many epochs metatrain writes a checkpoint for this run: the gcd of its checkpoint_epochs
    (None: the run keeps none)."""
    import math

    epochs = [int(e) for e in model.checkpoint_epochs]
    if run not in set(model.checkpoint_runs) or not epochs:
        return None
    if max(epochs) >= model.max_epochs:
        raise ValueError(f"model {model.name}, run {run}: checkpoint_epochs={epochs} must be below max_epochs = "
                         f"{model.max_epochs} (metatrain counts from 0)")
    return math.gcd(*epochs) or model.max_epochs + 1  # only epoch 0: no later checkpoint


# -- training (rule train_model) -----------------------------------------------------------------------------
def _labelled(frames, path: Path) -> None:
    """Write structures for metatrain: positions, cell and the energy under ENERGY_KEY, nothing else."""
    import ase.io

    out = []
    for k, atoms in enumerate(frames):
        if "energy" not in atoms.info:
            raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has no energy to train on")
        copy = atoms.copy()
        copy.calc = None
        copy.info = {ENERGY_KEY: float(atoms.info["energy"])}
        copy.arrays = {key: copy.arrays[key] for key in ("numbers", "positions")}
        out.append(copy)
    ase.io.write(path, out, format="extxyz")


def options(model: Config, work: Path, seed: int, device: str, n_train: int, run: str = "") -> dict[str, Any]:
    """The options of metatrain's ``train_model`` for a model config, the data files in ``work``.

    Energies only (QM9 has no forces), the dataset's validation structures as the validation
    set, no test set. A per-atom target is metatrain's default (it divides the energies of a
    target by the atom count unless ``per_structure_targets`` names it). The batch size is
    capped at the training-set size: metatrain drops incomplete batches and refuses a
    training set smaller than one batch.
    """
    n = int(model.hidden_layers[0])
    target = {"energy": {"key": ENERGY_KEY, "unit": "eV", "forces": False, "stress": False, "virial": False}}
    every = checkpoint_interval(model, run) or model.max_epochs + 1
    return {
        "seed": int(seed), "base_precision": PRECISION[model.dtype], "device": device, "final_eval": False,
        "architecture": {
            "name": "soap_bpnn",
            "model": {
                "legacy": True,  # the paper's BPNN: one network per species, last-layer features blocked by species
                "soap": {"cutoff": {"radius": float(model.soap.cutoff), "width": float(model.soap.cutoff_width)},
                         "max_radial": int(model.soap.max_radial), "max_angular": int(model.soap.max_angular)},
                "bpnn": {"num_hidden_layers": len(model.hidden_layers), "num_neurons_per_layer": n},
            },
            "training": {
                "batch_size": int(min(model.optimizer.batch_size, n_train)), "num_epochs": int(model.max_epochs),
                "learning_rate": float(model.optimizer.lr), "checkpoint_interval": int(every),
                "per_structure_targets": [] if model.target == "energy_per_atom" else ["energy"],
            },
        },
        "training_set": {"systems": {"read_from": str(work / "train.xyz"), "length_unit": "angstrom"},
                         "targets": target},
        "validation_set": {"systems": {"read_from": str(work / "valid.xyz"), "length_unit": "angstrom"},
                           "targets": target},
        "test_set": 0.0,
    }


@contextmanager
def _global_state_kept():
    """The caller's global random states (torch, numpy, random, PYTHONHASHSEED) and torch dtype, restored on exit.

    metatrain's ``train_model`` seeds them all; building a model from a checkpoint draws initial weights.
    """
    import os
    import random

    import numpy as np
    import torch

    np_state, py_state, hash_seed = np.random.get_state(), random.getstate(), os.environ.get("PYTHONHASHSEED")
    dtype = torch.get_default_dtype()
    try:
        with torch.random.fork_rng():
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_default_dtype(dtype)
        if hash_seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hash_seed


@contextmanager
def _only_checkpoints(epochs: list[int]):
    """metatrain's trainer writes the epoch checkpoints ``model_<e>.ckpt`` of these epochs only (every other file
    as it would): a checkpoint holds the model, its best state and Adam's moments (about 100 MB at the paper's
    SOAP), and the paper's Fig 3 wants a few epochs of 2,500 whose gcd is 20."""
    import re

    from metatrain.soap_bpnn.trainer import Trainer

    keep = {int(e) for e in epochs}
    save = Trainer.save_checkpoint

    def selective(self, model, path):
        match = re.fullmatch(r"model_([0-9]+)\.ckpt", Path(path).name)
        if match is None or int(match[1]) in keep:
            save(self, model, path)

    Trainer.save_checkpoint = selective
    try:
        yield
    finally:
        Trainer.save_checkpoint = save


def _train_model(opts: dict, work: Path, keep: list[int]) -> None:
    """metatrain's own ``train_model`` (what ``mtt train`` runs) in this process, its files in ``work``; of the
    epoch checkpoints, those of the epochs ``keep``."""
    from metatrain.cli.train import train_model
    from omegaconf import OmegaConf

    with _only_checkpoints(keep):
        train_model(OmegaConf.create(opts), output=str(work / "model.pt"), extensions=str(work / "extensions"),
                    checkpoint_dir=str(work / "checkpoints"))


def _export_checkpoints(work: Path, target: Path, epochs: list[int]) -> list[dict[str, Any]]:
    """metatrain's ``model_<epoch>.ckpt`` as exported models of the weights *at* that epoch.

    metatrain reads a checkpoint for inference as the best model up to its epoch; the model
    at the epoch itself (what Fig 3 follows along training) is its ``model_state_dict``,
    read with ``context="restart"``. ``epoch`` is metatrain's (0-based: epoch 0 is the
    model after one pass over the training set).
    """
    import re

    import torch
    from metatrain.utils.io import model_from_checkpoint

    found = {}
    for path in (work / "checkpoints").glob("model_*.ckpt"):
        match = re.fullmatch(r"model_([0-9]+)\.ckpt", path.name)
        if match:
            found[int(match[1])] = path
    missing = sorted(set(epochs) - set(found))
    if missing:
        raise RuntimeError(f"metatrain wrote no checkpoint of epochs {missing} (it wrote {sorted(found)})")
    listed = []
    for epoch in sorted(epochs):
        checkpoint = torch.load(found[epoch], weights_only=False, map_location="cpu")
        if int(checkpoint["epoch"]) != epoch:
            raise RuntimeError(f"{found[epoch].name} holds epoch {checkpoint['epoch']}")
        target.mkdir(exist_ok=True)
        model_from_checkpoint(checkpoint, context="restart").export().save(str(target / f"epoch_{epoch}.pt"))
        listed.append(dict(epoch=epoch, epochs_trained=epoch + 1, file=f"{target.name}/epoch_{epoch}.pt"))
    return listed


def _portable(expanded: dict, work: Path) -> dict:
    """metatrain's expanded options with the temporary data paths reduced to their file names."""
    import json

    text = json.dumps(expanded)
    return json.loads(text.replace(str(work) + "/", ""))


def train(model: Config, frames, rows, key, cfg) -> dict[str, Any]:
    """Train with metatrain's own ``train_model`` on the run's structures; the manifest of the model written.

    Beside the manifest (``cfg.output``): ``model.pt`` (exported, metatrain's final model:
    the weights of the epoch with the best validation RMSE, ``best_epoch``), ``model.ckpt``
    (its checkpoint, for restarts and metatrain's llpr) and, for a run of ``checkpoint_runs``,
    ``checkpoints/epoch_<e>.pt``, the model at each of metatrain's ``checkpoint_epochs``; everything
    else metatrain writes stays in a temporary folder there, removed at the end. The
    validation set is the dataset's ``subset == "validation"`` structures.
    """
    import os
    import shutil
    import tempfile

    import torch
    from omegaconf import OmegaConf

    from .._results import frames_fingerprint, reference_methods
    from ..config import to_plain
    from ._network import training_setup

    check(model)
    out_dir, train_frames, valid, seed = training_setup(
        model, frames, rows, key, cfg,
        why="metatrain's validation set (a split of the training set would change the run's structures)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("model.pt", "model.ckpt", "checkpoints"):  # what an earlier run left
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    with _global_state_kept(), tempfile.TemporaryDirectory(prefix=".metatrain-", dir=out_dir) as tmp:
        work = Path(tmp)
        (work / "checkpoints").mkdir()
        _labelled(train_frames, work / "train.xyz")
        _labelled(valid, work / "valid.xyz")
        opts = options(model, work, seed, device, len(train_frames), key.key)
        keep = [int(e) for e in model.checkpoint_epochs] if checkpoint_interval(model, key.key) else []
        _train_model(opts, work, keep)
        for name in ("model.pt", "model.ckpt"):
            if not (work / name).is_file():
                raise RuntimeError(f"metatrain's train_model wrote no {name} in {work}: {sorted(os.listdir(work))}")
        expanded = _portable(OmegaConf.to_container(OmegaConf.load(work / "checkpoints" / "options_restart.yaml")),
                             work)
        final = torch.load(work / "model.ckpt", weights_only=False, map_location="cpu")
        epochs = dict(last_epoch=int(final["epoch"]), best_epoch=int(final["best_epoch"]))
        checkpoints = _export_checkpoints(work, out_dir / "checkpoints", keep) if keep else []
        for name in ("model.pt", "model.ckpt"):
            os.replace(work / name, out_dir / name)
        from rigidity.last_layer import MetatomicLastLayer

        n_features = MetatomicLastLayer(out_dir / "model.ckpt").n_features
    loss = expanded["architecture"]["training"]["loss"]["energy"]
    return dict(model=model.name, package="metatrain", file="model.pt", checkpoint="model.ckpt",
                checkpoints=checkpoints, **epochs, n_train=len(train_frames), n_valid=len(valid), seed=seed,
                device=device, last_layer_features=n_features,
                loss=dict(kind="energy", per_atom_energy=model.target == "energy_per_atom",
                          reduction=loss["reduction"], energy_weight=float(loss["weight"]), forces_weight=0.0),
                fingerprint=frames_fingerprint(train_frames), reference_method=reference_methods(train_frames),
                model_config=to_plain(cfg.model), metatrain_options=expanded)


def load(path):
    """A trained model file (``model.pt``, ``model.ckpt`` or a checkpoint's ``.pt``) as a metatomic AtomisticModel.

    A ``.ckpt`` is read as metatrain reads it for inference (its best weights) and exported;
    the global random state is kept (building the model from a checkpoint draws weights).
    The exported SOAP calls sphericart's TorchScript operators: they are loaded first (from
    the installed package; metatrain's collected copies are not kept).
    """
    import sphericart.torch  # noqa: F401
    from metatomic.torch import is_atomistic_model
    from metatrain.utils.io import load_model

    with _global_state_kept():
        model = load_model(str(path))
        return model if is_atomistic_model(model) else model.export()
