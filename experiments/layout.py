"""Where every unit of work lives under ``results/<scale>/``, and the names stages receive its files by.

A unit's key is its path relative to ``results/<scale>/`` without the file name:

====================================================  ===============================================
``data/<dataset>``                                    ``.extxyz`` (rule prepare_dataset)
``features/<model>/<dataset>/<kind>``                 ``.npz`` (compute_features; kind structures | atoms)
``models/<model>/<dataset>/<run>``                    ``/model.npz`` (fit_model) or ``/manifest.json``
                                                      (train_model, networks)
``hessians/<model>/<dataset>/<rows>``                 ``/hessian.npz`` (merge_hessian) of
                                                      ``/shard<k>of<K>.npz`` (accumulate_hessian)
``trajectories/<md>/<model>/<dataset>/<run>``         ``/trajectory.extxyz`` (run_md)
``tables/<experiment>``                               ``.csv`` and ``.<output>.<ext>`` (analyse_fig<N>)
``figures/<experiment>``                              ``.pdf`` and ``.png`` (plot_fig<N>)
====================================================  ===============================================

Stages get ``inputs={<key>: <path>, ...}`` from the rule and look their files up by key.
"""

from __future__ import annotations

__all__ = ["data_key", "features_key", "model_key", "hessian_key", "trajectory_key", "path_of", "shard_path",
           "input_name"]


def data_key(dataset: str) -> str:
    return f"data/{dataset}"


def features_key(model: str, dataset: str, kind: str = "structures") -> str:
    return f"features/{model}/{dataset}/{kind}"


def model_key(model: str, dataset: str, run: str) -> str:
    return f"models/{model}/{dataset}/{run}"


def hessian_key(model: str, dataset: str, rows: str) -> str:
    return f"hessians/{model}/{dataset}/{rows}"


def trajectory_key(md: str, model: str, dataset: str, run: str) -> str:
    return f"trajectories/{md}/{model}/{dataset}/{run}"


def path_of(key: str, model_kind: str = "linear") -> str:
    """The file of a unit, relative to ``results/<scale>/``."""
    top = key.split("/", 1)[0]
    if top == "data":
        return f"{key}.extxyz"
    if top == "features":
        return f"{key}.npz"
    if top == "models":
        return f"{key}/model.npz" if model_kind == "linear" else f"{key}/manifest.json"
    if top == "hessians":
        return f"{key}/hessian.npz"
    if top == "trajectories":
        return f"{key}/trajectory.extxyz"
    raise ValueError(f"unknown unit key {key!r}")


def shard_path(key: str, shard: int, n_shards: int) -> str:
    return f"{key}/shard{shard}of{n_shards}.npz"


def input_name(key: str) -> str:
    """A unit key as a Python identifier (a Snakemake input name):
    models/ace/si_nmers/set1 -> models__ace__si_nmers__set1."""
    return key.replace("/", "__").replace("-", "_")
