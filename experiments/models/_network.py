"""What every neural-network model config has (trained by its own package: Figs 1-3, 8-9)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from ..config import ModelConfig


@dataclass
class NetworkRigidity:
    regularizer: float = 2.5e-11  # sigma^2 added to the last-layer covariance (sigma = 5e-6, SETTINGS.md)
    reduce: str = MISSING  # structure rows of the PR: mean (atom-averaged) | sum of the last-layer features


@dataclass
class NetworkConfig(ModelConfig):
    max_epochs: int = MISSING  # training epochs (paper values; smaller at smoke and quick)
    seed: int = 0  # training seed (initial weights, batch order) when the run key names none
    rigidity: NetworkRigidity = field(default_factory=NetworkRigidity)


def untrained(model: NetworkConfig) -> NotImplementedError:
    """The error of a network whose training stage is not written yet."""
    return NotImplementedError(
        f"model {model.name} ({model.module}): training {model.module} networks is not implemented yet "
        f"(experiments/models/{model.module}.py defines no train())"
    )


def training_setup(model: NetworkConfig, frames, rows, key, cfg, why: str | None = None):
    """What every training stage starts from: the output folder (created), the run's training structures, the
    dataset's ``subset == "validation"`` structures and the seed (the run key's, else the config's).

    With ``why`` (what the package needs a validation set for), a dataset without one is refused.
    """
    from pathlib import Path

    out_dir = Path(cfg.output).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    valid = [a for a in frames if a.info.get("subset") == "validation"]
    if not valid and why is not None:
        subsets = sorted({str(a.info.get("subset")) for a in frames})
        raise ValueError(f"model {model.name}: the dataset has no structure with info subset = 'validation' "
                         f"(subsets: {subsets}): {why}")
    seed = int(key.seed if key.seed is not None else model.seed)
    return out_dir, [frames[i] for i in rows], valid, seed


def last_layer(manifest_path):
    """The last-layer adapter of a trained network, from the manifest its train_model job wrote."""
    import importlib
    import json
    from pathlib import Path

    path = Path(manifest_path)
    meta = json.loads(path.read_text())
    package = meta.get("package")
    model_file = path.parent / meta["file"]
    if package == "mace-torch":
        from rigidity.last_layer import MACELastLayer

        return MACELastLayer(importlib.import_module("experiments.models.mace").load(model_file))
    if package == "schnetpack":
        from rigidity.last_layer import PaiNNLastLayer

        return PaiNNLastLayer(importlib.import_module("experiments.models.painn").load(model_file))
    if package == "metatrain":
        from rigidity.last_layer import MetatomicLastLayer

        return MetatomicLastLayer(str(model_file))
    raise ValueError(f"{path}: package {package!r} is not one this workflow trains (mace-torch, schnetpack, "
                     "metatrain)")


def paper_llpr(ll, model: NetworkConfig):
    """The paper's last-layer PR of a network (SETTINGS.md): the covariance of its energy rows only (no force rows),
    atom-averaged (``rigidity.reduce: mean``, MACE and SOAP-BPNN) or summed (PaiNN), plus sigma^2 I."""
    from rigidity.last_layer import LLPR

    reduce = model.rigidity.reduce
    if reduce not in ("mean", "sum"):
        raise ValueError(f"model {model.name}: rigidity.reduce must be 'mean' or 'sum', got {reduce!r}")
    return LLPR(ll, regularizer=model.rigidity.regularizer, energy_weight=1.0, force_weight=0.0,
                per_atom_energy=reduce == "mean", reduction="sum")
