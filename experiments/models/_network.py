"""What every neural-network model config has (trained by its own package: Figs 1-3, 8-9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import MISSING

from ..config import ModelConfig


@dataclass
class NetworkRigidity:
    regularizer: float = 2.5e-11  # sigma^2 added to the last-layer covariance (sigma = 5e-6, SETTINGS.md)
    reduce: str = MISSING  # structure rows of the PR: mean (atom-averaged) | sum of the last-layer features
    rows: str = "energies"  # the training rows H sums: energies (Figs 1-3) | forces (force matching, Figs 8-9)


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
    rows = getattr(model.rigidity, "rows", None) or "energies"  # manifests written before the key: energy rows
    if reduce not in ("mean", "sum"):
        raise ValueError(f"model {model.name}: rigidity.reduce must be 'mean' or 'sum', got {reduce!r}")
    if rows not in ("energies", "forces"):
        raise ValueError(f"model {model.name}: rigidity.rows must be 'energies' or 'forces', got {rows!r}")
    energies = rows == "energies"
    return LLPR(ll, regularizer=model.rigidity.regularizer, energy_weight=1.0 if energies else 0.0,
                force_weight=0.0 if energies else 1.0, per_atom_energy=reduce == "mean", reduction="sum",
                energy_key="energy", forces_key="forces")


def llpr_with(ll, model: NetworkConfig, hessian):
    """:func:`paper_llpr` of ``ll`` with H read from an accumulate_hessian / merge_hessian file (a
    :class:`rigidity.Hessian` of the same features and regulariser), not refitted."""
    llpr = paper_llpr(ll, model)
    if hessian.n_features != ll.n_features:
        raise ValueError(f"the Hessian has {hessian.n_features} features, the model {ll.n_features}: another "
                         "model's file")
    if float(hessian.regularizer) != float(model.rigidity.regularizer):
        raise ValueError(f"the Hessian's regulariser {hessian.regularizer} is not the model's "
                         f"rigidity.regularizer {model.rigidity.regularizer}")
    llpr.hessian = hessian
    llpr.n_train = int(hessian.metadata.get("n_selected", 0))
    return llpr


# -- what the analyses of Figs 1-3 read from a trained network -----------------------------------------------------
@dataclass
class Trained:
    """A trained network as its train_model job left it: the manifest, its folder and its model config."""

    path: Any  # the manifest's path
    meta: dict  # the manifest
    config: Any  # the model config it was trained with (OmegaConf)

    @property
    def rows(self) -> list[int]:
        return [int(i) for i in self.meta["rows"]]

    def last_layer(self, file: str | None = None):
        """The last-layer adapter of the model (or of one of its files: a checkpoint)."""
        if file is None:
            return last_layer(self.path)
        from rigidity.last_layer import MetatomicLastLayer

        if self.meta.get("package") != "metatrain":
            raise ValueError(f"{self.path}: only metatrain runs keep checkpoints, this is {self.meta.get('package')}")
        return MetatomicLastLayer(str(self.path.parent / file))


def trained(manifest_path, frames) -> Trained:
    """Read a network's manifest and check that it was trained on these structures (rows and fingerprint)."""
    import json
    from pathlib import Path

    from omegaconf import OmegaConf

    from .._results import frames_fingerprint

    path = Path(manifest_path)
    meta = json.loads(path.read_text())
    for key in ("rows", "fingerprint", "model_config"):
        if key not in meta:
            raise ValueError(f"{path}: the manifest has no {key!r}; it was written by an older train_model: rerun it")
    rows = [int(i) for i in meta["rows"]]
    if rows and (min(rows) < 0 or max(rows) >= len(frames)):
        raise ValueError(f"{path}: training rows up to {max(rows)}, the dataset has {len(frames)} structures")
    if frames_fingerprint([frames[i] for i in rows]) != meta["fingerprint"]:
        raise ValueError(f"{path}: the model was trained on other structures than rows {rows[:3]}... of this "
                         "dataset file (fingerprints differ): the dataset changed after training; rerun the workflow")
    return Trained(path=path, meta=meta, config=OmegaConf.create(meta["model_config"]))


def subset(frames, name: str, n: int | None = None) -> list:
    """The structures with ``info["subset"] == name`` in file order (the first ``n``), refusing too few."""
    chosen = [a for a in frames if a.info.get("subset") == name]
    if not chosen or (n is not None and len(chosen) < n):
        have = sorted({str(a.info.get("subset")) for a in frames})
        raise ValueError(f"the dataset has {len(chosen)} structures with info subset = {name!r} (subsets: {have}); "
                         f"{n or 1} needed")
    return chosen if n is None else chosen[:n]


def predictions(llpr, frames, reduce: str, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per structure: the model's energy and its reference (per atom with ``reduce="mean"``, else total), the
    variance g^T H^-1 g of that prediction (g: the structure's mean or summed last-layer features, as H's energy
    rows); per atom: the LPR 1 / (phi_i^T H^-1 phi_i), the local energy phi_i . w + c_i, the species and the
    structure of each atom."""
    ll = llpr.last_layer
    out = ll.compute(frames, batch_size=batch_size)
    structure = out["structure"]
    counts = np.bincount(structure, minlength=len(frames)).astype(float)
    g = np.zeros((len(frames), ll.n_features))
    np.add.at(g, structure, out["phi"])
    energy = np.asarray(out["energy"], dtype=float)
    reference = np.array([float(a.info["energy"]) for a in frames])
    if reduce == "mean":
        g, energy, reference = g / counts[:, None], energy / counts, reference / counts
    elif reduce != "sum":
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    local = out["phi"]
    if getattr(ll, "aggregation", "sum") == "avg":  # an averaging model's features are divided by the atom count:
        local = local * counts[structure, None]  # an atom's own readout, as rigidity's LLPR.predict takes it
    return dict(energy=energy, reference=reference, variance=np.asarray(llpr.hessian.variance(g)), n_atoms=counts,
                lpr=np.asarray(llpr.hessian.lpr(local)), local=out["phi"] @ ll.weights + out["constants"],
                structure=structure, numbers=np.concatenate([a.numbers for a in frames]))


def fitted_llpr(net: Trained, frames, ll=None):
    """The paper's LLPR (:func:`paper_llpr`) of a trained network (or of ``ll``, one of its checkpoints), H over
    the structures it was trained on."""
    llpr = paper_llpr(ll if ll is not None else net.last_layer(), net.config)
    return llpr.fit([frames[i] for i in net.rows])
