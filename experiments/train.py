"""Stage "fit_model" / "train_model": one trained model, keyed by (model, dataset, run).

    python -m experiments.train model=<m> dataset=<d> run=<run key> \
        inputs='{data/<d>: <extxyz>, features/<m>/<d>/structures: <npz>}' output=<model.npz | manifest.json>

The run key (experiments/runs.py) selects the training structures from the dataset's
training pool (``dataset.training``). A linear model (``kind: linear``) is fitted on
its descriptor features by its module's ``fit``; a network (``kind: network``) is
trained by its own package through its module's ``train``.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from ._results import TrainedModel, frames_fingerprint, load_features, reference_methods, save_model, write_json
from ._stage import entry_point, input_path, typed
from .config import model_module, to_plain
from .layout import data_key, features_key
from .runs import parse_run, select, set_label
from .workflow import train_section

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> TrainedModel | dict:
    from .data import dataset_config
    from .datasets.io import read_frames

    if cfg.get("model") is None:
        raise ValueError("no model selected: pass model=<name> (see config/model/)")
    if not cfg.run:
        raise ValueError("pass run=<run key>, e.g. run=n1000 or run=set2 (see experiments/runs.py)")
    ds = dataset_config(cfg)
    model = typed(cfg.model)
    module = model_module(model.module)
    if hasattr(module, "check"):
        module.check(model)
    key = parse_run(cfg.run)
    energy_key = "energy" if model.kind == "linear" else None  # networks may be force-matched (no energies)
    frames = read_frames(input_path(cfg, data_key(ds.name)), energy_key=energy_key, forces_key=None)
    rows = select(frames, ds.training, key.key, ds.name)
    if model.kind == "network":
        if not hasattr(module, "train"):
            from .models._network import untrained

            raise untrained(model)
        manifest = module.train(model, frames, rows, key, cfg)
        # what every analysis of a network reads: its training structures (positions in the dataset file) and run
        manifest.update(dataset=ds.name, run=key.key, scale=cfg.scale.name, rows=[int(i) for i in rows])
        return manifest
    meta = dict(model=model.name, model_config=train_section(to_plain(cfg.model)), dataset=ds.name, run=key.key,
                training_pool=to_plain(ds.training), scale=cfg.scale.name, fingerprint=frames_fingerprint(frames),
                reference_method=reference_methods([frames[i] for i in rows]), n_train=int(len(rows)))
    if key.name is not None:
        meta["label"] = set_label(dict(ds.training.sets[key.name]), list(ds.training.sets_order))
    if key.seed is not None:
        raise ValueError(f"run {key.key}: a linear model's fit has no seed; drop -seed{key.seed}")
    if not hasattr(module, "fit"):
        raise ValueError(f"model {model.name}: experiments/models/{model.module}.py has no fit(); the figures that "
                         "use it refit inside their analysis")
    features = load_features(input_path(cfg, features_key(model.name, ds.name, "structures")), frames)
    trained = module.fit(model, frames, features, rows)
    trained.meta.update(meta)
    trained.arrays.setdefault("rows", np.asarray(rows))
    log.info("%s on %s, run %s: fitted on %d structures", model.name, ds.name, key.key, len(rows))
    return trained


def write(cfg: DictConfig) -> None:
    if not cfg.output:
        raise ValueError("pass output=<path of the trained model file to write>")
    trained = run(cfg)
    if isinstance(trained, dict):  # a network: its package wrote the model beside the manifest
        write_json(cfg.output, trained)
    else:
        save_model(trained, cfg.output)


main = entry_point(write)

if __name__ == "__main__":
    main()
