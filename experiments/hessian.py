"""Stages "accumulate_hessian" and "merge_hessian": H as map-reduce over jobs.

    python -m experiments.hessian step=accumulate model=<m> dataset=<d> rows=<run key> shard=<k> n_shards=<K> \
        inputs='{data/<d>: <extxyz>}' output=<shard npz>
    python -m experiments.hessian step=merge inputs='{shards: [<shard npz>, ...]}' output=<hessian npz>

H = sum_s g_s g_s^T + sigma^2 I is additive: shard k of K (a contiguous block of the
rows the run key selects) accumulates its rows, and the merge sums the K files
(:meth:`rigidity.Hessian.merged`), which refuses shards of another feature set,
regulariser or dtype, and truncated files. A shard records the feature set it
belongs to (``feature_set``: model config, dataset, rows and the structures'
fingerprint), the shard it is and the reference method of all the rows.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
from omegaconf import DictConfig

from ._results import frames_fingerprint, reference_methods
from ._stage import entry_point, input_path, typed
from .config import model_module, to_plain
from .layout import data_key
from .runs import select
from .workflow import hessian_section

log = logging.getLogger(__name__)


def feature_set(model_config: dict, training: dict, dataset: str, rows: str, fingerprint: str) -> str:
    """What every shard of one Hessian shares: the model config it reads, the dataset's training pool, the rows and
    the structures (the sections of the rule's digest, so that the shards of one digest merge)."""
    blob = json.dumps({"model": model_config, "training": training, "dataset": dataset, "rows": rows,
                       "fingerprint": fingerprint}, sort_keys=True)
    return f"{model_config.get('name')}/{dataset}/{rows}@{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def accumulate(cfg: DictConfig):
    """The Hessian of shard ``cfg.shard`` of ``cfg.n_shards`` of the rows ``cfg.rows`` selects (not yet saved)."""
    from rigidity import Hessian

    from .data import dataset_config
    from .datasets.io import read_frames

    if cfg.get("model") is None or not cfg.rows:
        raise ValueError("step=accumulate needs model=<name>, dataset=<name> and rows=<run key>")
    if not 0 <= int(cfg.shard) < int(cfg.n_shards):
        raise ValueError(f"shard={cfg.shard} must satisfy 0 <= shard < n_shards={cfg.n_shards}")
    ds = dataset_config(cfg)
    model = typed(cfg.model)
    module = model_module(model.module)
    if hasattr(module, "check"):
        module.check(model)
    frames = read_frames(input_path(cfg, data_key(ds.name)), energy_key=None, forces_key=None)
    rows = select(frames, ds.training, cfg.rows, ds.name)
    if len(rows) < int(cfg.n_shards):
        raise ValueError(f"rows {cfg.rows} of {ds.name} select {len(rows)} structures, fewer than the "
                         f"n_shards={cfg.n_shards} shards of scale.hessian_shards: lower it for this scale")
    part = np.array_split(rows, int(cfg.n_shards))[int(cfg.shard)]
    if model.kind == "network":  # the last-layer rows of the network trained on these rows (its train_model job)
        h = _network_shard(cfg, model, frames, rows, part)
    else:
        G = module.hessian_rows(model, [frames[i] for i in part])
        h = Hessian(G.shape[1], regularizer=float(model.rigidity.regularizer)).add(G)
    h.metadata.update(
        feature_set=feature_set(hessian_section(to_plain(cfg.model)), to_plain(ds.training), ds.name, str(cfg.rows),
                                frames_fingerprint(frames)),
        model=model.name, dataset=ds.name, rows=str(cfg.rows), n_selected=int(len(rows)), scale=cfg.scale.name,
        descriptor=json.dumps(to_plain(cfg.model.get("descriptor")), sort_keys=True),
        reference_method=reference_methods([frames[i] for i in rows]),
        shard=f"{int(cfg.shard)}/{int(cfg.n_shards)}",
    )
    log.info("%s on %s, rows %s: shard %d of %d, %d of %d rows", model.name, ds.name, cfg.rows, cfg.shard,
             cfg.n_shards, len(part), len(rows))
    return h


def _network_shard(cfg: DictConfig, model, frames, rows, part):
    """H of one shard of a network's training rows (:func:`experiments.models._network.paper_llpr`: its energy or
    its force rows, ``rigidity.rows``), from the model of run ``cfg.rows``, which must have been trained on them."""
    from .layout import model_key
    from .models._network import paper_llpr, trained

    net = trained(input_path(cfg, model_key(model.name, cfg.dataset.name, str(cfg.rows))), frames)
    if net.rows != [int(i) for i in rows]:
        raise ValueError(f"rows {cfg.rows}: the model was trained on other rows of {cfg.dataset.name} "
                         f"({len(net.rows)} structures) than the {len(rows)} this key selects now")
    llpr = paper_llpr(net.last_layer(), model).fit([frames[i] for i in part])
    log.info("%s: %s rows of %d structures, %d last-layer features", model.name, model.rigidity.rows, len(part),
             llpr.last_layer.n_features)
    return llpr.hessian


def merge(cfg: DictConfig):
    """The sum of the shard files ``cfg.inputs.shards`` (all K of them, each once)."""
    from rigidity import Hessian

    paths = [str(p) for p in ((cfg.get("inputs") or {}).get("shards") or [])]
    if not paths:
        raise ValueError("step=merge needs inputs='{shards: [<shard npz>, ...]}'")
    h = Hessian.merged(paths)
    n = len(paths)
    got = sorted(Hessian.load(p).metadata.get("shard", "?") for p in paths)
    want = sorted(f"{k}/{n}" for k in range(n))
    if got != want:
        raise ValueError(f"the shards {paths} are {got}, not the {n} shards {want} of one Hessian")
    h.metadata.pop("shard", None)
    return h


def write(cfg: DictConfig) -> None:
    if not cfg.output:
        raise ValueError("pass output=<path of the npz to write>")
    if cfg.step == "accumulate":
        accumulate(cfg).save(cfg.output)
    elif cfg.step == "merge":
        merge(cfg).save(cfg.output)
    else:
        raise ValueError(f"step={cfg.step!r} must be accumulate or merge")


main = entry_point(write)

if __name__ == "__main__":
    main()
