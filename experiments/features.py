"""Stage "compute_features": descriptor features of one dataset for one linear model.

    python -m experiments.features model=<linear model> dataset=<d> kind=structures|atoms \
        inputs='{data/<d>: <extxyz>}' output=<npz>

``kind=structures`` gives one summed row per structure (the gradient of a total energy;
divide by ``n_atoms`` for the atom mean), ``kind=atoms`` one row per atom with the
structure it belongs to. The file records the model config, the descriptor, the
structures' fingerprint (so that a later stage refuses other structures) and their
reference method.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ._results import FeatureSet, frames_fingerprint, reference_methods, save_features
from ._stage import entry_point, input_path, typed
from .config import FEATURE_KINDS, model_module, to_plain
from .layout import data_key
from .workflow import features_section

log = logging.getLogger(__name__)


def linear_model(cfg: DictConfig):
    """The composed model as its dataclass, and its module; refuses a network."""
    if cfg.get("model") is None:
        raise ValueError("no model selected: pass model=<name> (see config/model/)")
    model = typed(cfg.model)
    if model.kind != "linear":
        raise ValueError(f"model {model.name} is a {model.kind} model: descriptor features are for linear models")
    module = model_module(model.module)
    if hasattr(module, "check"):
        module.check(model)
    return model, module


def run(cfg: DictConfig) -> FeatureSet:
    from .datasets.io import read_frames

    if cfg.kind not in FEATURE_KINDS:
        raise ValueError(f"kind={cfg.kind!r} is not one of {list(FEATURE_KINDS)}")
    if cfg.get("dataset") is None:
        raise ValueError("no dataset selected: pass dataset=<name> (see config/dataset/)")
    model, module = linear_model(cfg)
    frames = read_frames(input_path(cfg, data_key(cfg.dataset.name)), energy_key=None, forces_key=None)
    fs = module.features(model, frames, cfg.kind)
    fs.meta.update(model=model.name, model_config=features_section(to_plain(cfg.model)), dataset=cfg.dataset.name,
                   kind=cfg.kind,
                   scale=cfg.scale.name, fingerprint=frames_fingerprint(frames), n_structures=len(frames),
                   reference_method=reference_methods(frames))
    log.info("%s on %s (%s): %s features of %d structures", model.name, cfg.dataset.name, cfg.kind, fs.X.shape,
             len(frames))
    return fs


def write(cfg: DictConfig) -> None:
    if not cfg.output:
        raise ValueError("pass output=<path of the npz to write>")
    save_features(run(cfg), cfg.output)


main = entry_point(write)

if __name__ == "__main__":
    main()
