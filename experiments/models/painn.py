"""PaiNN through schnetpack 2.2 (Figs 1-2 on QM9): config schema and training by schnetpack's own
``AtomisticTask`` and a ``pytorch_lightning.Trainer``, as ``spktrain experiment=qm9_atomwise`` does.

schnetpack's QM9 recipe, kept here: PaiNN on a Gaussian radial basis with a cosine cutoff, an
``Atomwise`` energy (sum over atoms), the training mean per atom and the isolated-atom energies
removed from the targets (``RemoveOffsets``) and added back after the network (``AddOffsets``, in
float64), MSE loss, Adam (the recipe's AdamW without weight decay), ReduceLROnPlateau, early
stopping and an exponential moving average of the weights, the best validation model kept
(``schnetpack.train.ModelCheckpoint``). Training is in float32, as the recipe's ``CastTo32``; the
offsets (:func:`offsets`, the datamodule's statistics computed here in float64) are removed from the
float64 targets and added back in float64, and :func:`load` returns the model in float64 for the
last-layer library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._network import NetworkConfig


@dataclass
class Optimizer:
    lr: float = 5.0e-4  # Adam learning rate
    batch_size: int = 100  # structures per batch
    patience: int = 200  # epochs without validation improvement before stopping (schnetpack's early stopping)
    lr_factor: float = 0.5  # ReduceLROnPlateau: the learning rate's factor after lr_patience epochs without improvement
    lr_patience: int = 75  # ReduceLROnPlateau patience (epochs; schnetpack's default)
    ema_decay: float | None = 0.995  # exponential moving average of the weights (schnetpack's default); null: none


@dataclass
class Config(NetworkConfig):
    cutoff: float = 5.0  # A, neighbour cutoff
    n_atom_basis: int = 128  # features per atom (schnetpack default; not stated in SETTINGS.md)
    n_interactions: int = 3  # message-passing layers (schnetpack default)
    n_rbf: int = 20  # Gaussian radial basis functions (schnetpack default)
    aggregation: str = "sum"  # readout aggregation over atoms: sum | avg
    loss: str | None = None  # energy | energy_forces; null: energy_forces where every structure has forces, else energy
    atomrefs: Any = None  # eV per element removed before training, added back: {symbol: eV}, "qm9" or null (mean only)
    last_layer_features: int | None = None  # expected number of last-layer features (a check): n_atom_basis / 2
    optimizer: Optimizer = field(default_factory=Optimizer)


# -- training (rule train_model) -----------------------------------------------------------------------------
#: schnetpack's ModelOutput loss weights, each an MSE averaged over its batch (what the LLPR must know): QM9's
#: recipe trains energies alone, its MD17 recipe weights energies 0.01 and forces 0.99
LOSS_WEIGHTS = {"energy": {"energy_weight": 1.0, "forces_weight": 0.0},
                "energy_forces": {"energy_weight": 0.01, "forces_weight": 0.99}}
AGGREGATIONS = ("sum", "avg")
Z_MAX = 100  # length of schnetpack's atom-reference tables


def check(model: Config) -> None:
    """Config values that schnetpack would take but train wrongly, or refuse only after the data is written."""
    if model.loss is not None and model.loss not in LOSS_WEIGHTS:
        raise ValueError(f"model {model.name}: loss {model.loss!r} is not one of {list(LOSS_WEIGHTS)} (or null)")
    if model.aggregation not in AGGREGATIONS:
        raise ValueError(f"model {model.name}: aggregation {model.aggregation!r} is not one of {list(AGGREGATIONS)}")
    if isinstance(model.atomrefs, str) and model.atomrefs != "qm9":
        raise ValueError(f"model {model.name}: atomrefs {model.atomrefs!r}: expected 'qm9', a table {{symbol: eV}} "
                         "or null")


def _loss_kind(model: Config, frames) -> str:
    has_forces = all("forces" in atoms.arrays for atoms in frames)
    if model.loss is None:
        return "energy_forces" if has_forces else "energy"
    if model.loss == "energy_forces" and not has_forces:
        missing = sum("forces" not in atoms.arrays for atoms in frames)
        raise ValueError(f"model {model.name}: loss energy_forces, but {missing} of the {len(frames)} training "
                         "structures have no forces")
    return model.loss


def atom_references(model: Config, frames) -> dict[str, float] | None:
    """The per-element energies (eV) of the config, checked against the training structures' elements."""
    from ase.data import chemical_symbols

    if model.atomrefs is None:
        return None
    if isinstance(model.atomrefs, str):  # "qm9": QM9's atomref.txt, what schnetpack's QM9 dataset ships
        from ..datasets.qm9 import ATOM_U0_HARTREE, HARTREE_TO_EV, REFERENCE_METHOD

        methods = {str(a.info.get("reference_method")) for a in frames}
        if methods != {REFERENCE_METHOD}:
            raise ValueError(f"model {model.name}: atomrefs 'qm9' are QM9's {REFERENCE_METHOD} isolated-atom U0, but "
                             f"the training structures were computed with {sorted(methods)}: set model.atomrefs to "
                             "a table {symbol: eV} or null")
        table = {s: e * HARTREE_TO_EV for s, e in ATOM_U0_HARTREE.items()}
    else:
        table = {str(s): float(e) for s, e in dict(model.atomrefs).items()}
    unknown = sorted(set(table) - set(chemical_symbols[1:Z_MAX]))
    if unknown:
        raise ValueError(f"model {model.name}: atomrefs name {unknown}, not element symbols below Z = {Z_MAX}")
    missing = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()} - set(table))
    if missing:
        raise ValueError(f"model {model.name}: atomrefs have no energy for {missing} (they give {sorted(table)})")
    return table


def offsets(frames, atomrefs: dict[str, float] | None) -> tuple[float, np.ndarray | None]:
    r"""The mean per atom of what the atom references leave of the energies, and the references as a Z table (eV).

    .. math:: \mu = \frac{1}{N} \sum_s \frac{E_s - \sum_{i \in s} E^0_{Z_i}}{n_s}

    what schnetpack's ``AtomsDataModule.get_stats(energy, True, True)`` computes, here in float64
    (schnetpack sums the references of a dataset's metadata in float32: 1e-3 eV on a QM9 molecule).
    """
    from ase.data import atomic_numbers

    table = None
    if atomrefs is not None:
        table = np.zeros(Z_MAX)
        for symbol, energy in atomrefs.items():
            table[atomic_numbers[symbol]] = energy
    residual = [float(a.info["energy"]) - (0.0 if table is None else float(table[a.numbers].sum())) for a in frames]
    return float(np.mean([r / len(a) for r, a in zip(residual, frames)])), table


def _offset_modules(mean: float, table: np.ndarray | None):
    """schnetpack's RemoveOffsets (the data's transform) and AddOffsets (the model's postprocessor), float64."""
    import schnetpack as spk
    import torch

    args = dict(property_mean=torch.tensor([mean], dtype=torch.float64))
    if table is not None:
        args["atomrefs"] = torch.tensor(table, dtype=torch.float64)
    return (spk.transform.RemoveOffsets("energy", remove_mean=True, remove_atomrefs=table is not None, **args),
            spk.transform.AddOffsets("energy", add_mean=True, add_atomrefs=table is not None, **args))


def _network(model: Config, forces: bool, mean: float, table: np.ndarray | None):
    """schnetpack's NeuralNetworkPotential of a config, its weights drawn from torch's current random state."""
    import schnetpack as spk

    representation = spk.representation.PaiNN(
        n_atom_basis=model.n_atom_basis, n_interactions=model.n_interactions,
        radial_basis=spk.nn.GaussianRBF(n_rbf=model.n_rbf, cutoff=model.cutoff),
        cutoff_fn=spk.nn.CosineCutoff(model.cutoff))
    outputs = [spk.atomistic.Atomwise(n_in=model.n_atom_basis, output_key="energy",
                                      aggregation_mode=model.aggregation)]
    if forces:
        outputs.append(spk.atomistic.Forces(energy_key="energy", force_key="forces"))
    return spk.model.NeuralNetworkPotential(
        representation=representation, input_modules=[spk.atomistic.PairwiseDistances()], output_modules=outputs,
        postprocessors=[spk.transform.CastTo64(), _offset_modules(mean, table)[1]])


def _database(path: Path, train_frames, valid, forces: bool) -> Path:
    """The run's structures as schnetpack's ASEAtomsData (training first, then validation) and its split file."""
    from ase import Atoms
    from schnetpack.data import ASEAtomsData

    units = {"energy": "eV", "forces": "eV/Ang"} if forces else {"energy": "eV"}
    db = ASEAtomsData.create(str(path / "data.db"), distance_unit="Ang", property_unit_dict=units)
    props, structures = [], []
    for atoms in [*train_frames, *valid]:
        entry = {"energy": np.array([float(atoms.info["energy"])])}
        if forces:
            entry["forces"] = np.asarray(atoms.arrays["forces"], dtype=float)
        props.append(entry)
        structures.append(Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc))
    db.add_systems(props, structures)
    n = len(train_frames)
    np.savez(path / "split.npz", train_idx=np.arange(n), val_idx=np.arange(n, n + len(valid)),
             test_idx=np.arange(0))
    return path / "data.db"


def _callbacks(model: Config, work: Path, losses: list):
    import pytorch_lightning as pl
    import schnetpack as spk

    class ValidationLosses(pl.Callback):  # the validation loss of every epoch, for the manifest
        def on_validation_end(self, trainer, pl_module):
            losses.append(float(trainer.callback_metrics["val_loss"]))

    callbacks = [spk.train.ModelCheckpoint(model_path=str(work / "best_model"), dirpath=str(work / "checkpoints"),
                                           filename="{epoch:02d}", monitor="val_loss", save_top_k=1, mode="min"),
                 pl.callbacks.EarlyStopping(monitor="val_loss", patience=model.optimizer.patience, mode="min",
                                            min_delta=0.0, check_on_train_epoch_end=False),
                 ValidationLosses()]
    if model.optimizer.ema_decay is not None:
        callbacks.append(spk.train.ExponentialMovingAverage(decay=model.optimizer.ema_decay))
    return callbacks


def train(model: Config, frames, rows, key, cfg) -> dict[str, Any]:
    """Train with schnetpack's ``AtomisticTask`` and lightning's ``Trainer`` on the run's structures; the manifest.

    The validation set is the dataset's ``subset == "validation"`` structures; the model with the
    lowest validation loss (a pickled ``NeuralNetworkPotential``, as schnetpack saves ``best_model``)
    goes to ``model.pt`` beside the manifest (``cfg.output``); the temporary folder of the run (the
    ASE database, lightning's checkpoints) is removed.
    """
    import contextlib
    import logging
    import os
    import tempfile
    import warnings

    import pytorch_lightning as pl
    import schnetpack as spk
    import torch

    from .._results import frames_fingerprint, reference_methods
    from .._torch_compat import load_trusted_checkpoint
    from ..config import to_plain
    from ._network import training_setup

    check(model)
    out_dir, train_frames, valid, seed = training_setup(
        model, frames, rows, key, cfg, why="schnetpack keeps the best model on a validation set")
    kind = _loss_kind(model, [*train_frames, *valid])
    forces = kind == "energy_forces"
    weights = LOSS_WEIGHTS[kind]
    atomrefs = atom_references(model, [*train_frames, *valid])
    mean, table = offsets(train_frames, atomrefs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    losses: list[float] = []
    quiet = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [log.level for log in quiet]
    with tempfile.TemporaryDirectory(prefix=".painn-", dir=out_dir) as tmp, contextlib.chdir(tmp), \
            warnings.catch_warnings():
        # schnetpack's split lock and lightning's files go to the temporary folder; lightning's chatter is off
        work = Path(tmp)
        for log in quiet:
            log.setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module` and is already saved.*")
        warnings.filterwarnings("ignore", message=r".*The `srun` command is available.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        try:
            pl.seed_everything(seed, workers=True, verbose=False)
            net = _network(model, forces, mean, table)
            data = spk.data.AtomsDataModule(
                str(_database(work, train_frames, valid, forces)), batch_size=model.optimizer.batch_size,
                num_train=len(train_frames), num_val=len(valid), split_file=str(work / "split.npz"),
                transforms=[_offset_modules(mean, table)[0], spk.transform.MatScipyNeighborList(cutoff=model.cutoff),
                            spk.transform.CastTo32()],
                property_units={"energy": "eV", **({"forces": "eV/Ang"} if forces else {})}, distance_unit="Ang",
                num_workers=0, pin_memory=device == "cuda")
            outputs = [spk.task.ModelOutput(name="energy", loss_fn=torch.nn.MSELoss(),
                                            loss_weight=weights["energy_weight"], metrics={})]
            if forces:
                outputs.append(spk.task.ModelOutput(name="forces", loss_fn=torch.nn.MSELoss(),
                                                    loss_weight=weights["forces_weight"], metrics={}))
            task = spk.task.AtomisticTask(
                model=net, outputs=outputs, optimizer_cls=torch.optim.Adam,
                optimizer_args={"lr": model.optimizer.lr}, scheduler_cls=spk.train.ReduceLROnPlateau,
                scheduler_args=dict(mode="min", factor=model.optimizer.lr_factor,
                                    patience=model.optimizer.lr_patience, threshold=0.0, threshold_mode="rel",
                                    cooldown=10, min_lr=0.0, smoothing_factor=0.0),
                scheduler_monitor="val_loss")
            trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                                 max_epochs=model.max_epochs, callbacks=_callbacks(model, work, losses),
                                 logger=False, enable_progress_bar=False, enable_model_summary=False,
                                 default_root_dir=str(work), num_sanity_val_steps=0, inference_mode=False)
            trainer.fit(task, datamodule=data)
        finally:
            for log, level in zip(quiet, levels):
                log.setLevel(level)
        best = work / "best_model"
        if not best.is_file():
            raise RuntimeError(f"schnetpack wrote no best_model in {work}: {sorted(os.listdir(work))}")
        # the best model as schnetpack saved it, on the CPU whatever it was trained on
        torch.save(load_trusted_checkpoint(best), out_dir / "model.pt")
    from rigidity.last_layer import PaiNNLastLayer

    ll = PaiNNLastLayer(load(out_dir / "model.pt"))
    if model.last_layer_features is not None and ll.n_features != model.last_layer_features:
        raise RuntimeError(f"model {model.name}: {ll.n_features} last-layer features, the config expects "
                           f"{model.last_layer_features}")
    return dict(model=model.name, package="schnetpack", file="model.pt", n_train=len(train_frames),
                n_valid=len(valid), seed=seed, device=device, last_layer_features=ll.n_features,
                loss=dict(kind=kind, per_atom_energy=False, reduction="mean", **weights),
                offsets=dict(mean_per_atom=mean, atomrefs=atomrefs), dtype="float32", epochs=len(losses),
                val_loss=losses, fingerprint=frames_fingerprint(train_frames),
                reference_method=reference_methods(train_frames), model_config=to_plain(cfg.model))


def load(path):
    """A trained model file (``model.pt``, a pickled schnetpack ``NeuralNetworkPotential``) in float64, on the CPU."""
    from .._torch_compat import load_trusted_checkpoint

    return load_trusted_checkpoint(Path(path)).double().eval()
