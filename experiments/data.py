"""Stage "data": build one dataset and write it as extended XYZ.

    python -m experiments.data dataset=si_clusters scale=quick output=results/quick/data/si_clusters.extxyz

The dataset's ``source`` decides where the structures come from: ``generate``
(offline generator with an embedded reference calculator, the default),
``file`` (any extxyz the user names, checked frame by frame) or ``download``
(the public archive, fetched once into ``raw_dir`` and checked against its
SHA-256). Every structure records its dataset, scale, source and reference method.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ._stage import entry_point
from .config import DatasetConfig
from .datasets import dataset_module
from .datasets.download import fetch
from .datasets.io import DatasetError, Reference, annotate, read_frames, write_frames

log = logging.getLogger(__name__)

SOURCES = ("download", "file", "generate")
REPOSITORY = Path(__file__).resolve().parents[1]


def dataset_config(cfg: DictConfig) -> DatasetConfig:
    """The dataset node as a :class:`~experiments.config.DatasetConfig` (unknown keys fail)."""
    if cfg.get("dataset") is None:
        raise ValueError("no dataset selected: pass dataset=<name> (see config/dataset/)")
    ds = OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset)
    if ds.source not in SOURCES:
        raise ValueError(f"dataset {ds.name}: dataset.source={ds.source!r} is not one of {SOURCES}")
    return ds


def generator_params(ds: DatasetConfig, params_cls: type) -> Any:
    """Generator parameters: the dataset's ``generate`` node checked against the module's ``Params``.

    The scale's sizes are already in it (config/sizes/dataset/<name>/<scale>.yaml), and the command line after them.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(params_cls), ds.generate)
    except Exception as err:  # an unknown key or a wrong type, named with its full key
        raise ValueError(f"dataset {ds.name}: dataset.generate does not fit "
                         f"{params_cls.__module__}.Params: {err}") from None
    return OmegaConf.to_object(merged)


def resolve_path(path: str) -> Path:
    """A file path as given, or, when relative and absent here, relative to the repository root."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (REPOSITORY / p).exists():
        return REPOSITORY / p
    return p


def run(cfg: DictConfig) -> list:
    """Build the frames of ``cfg.dataset`` at ``cfg.scale`` (nothing is written)."""
    ds = dataset_config(cfg)
    scale = cfg.scale.name
    module = dataset_module(ds.name)
    params = generator_params(ds, module.Params)
    if ds.source == "generate":
        frames = module.generate(params, int(cfg.seed))
    else:
        if ds.source == "file":
            if not ds.file.path:
                raise DatasetError(f"dataset {ds.name}: source=file needs dataset.file.path=<your.extxyz>")
            if not ds.file.reference_method:
                raise DatasetError(
                    f"dataset {ds.name}: source=file needs dataset.file.reference_method=<what computed the energies>"
                )
            path = resolve_path(ds.file.path)
            frames = read_frames(path, ds.file.energy_key, ds.file.forces_key, periodic=ds.periodic)
            ref = Reference(ds.file.reference_method, f"read from {ds.file.path}", {"path": str(ds.file.path)})
            frames = [annotate(a, ref) for a in frames]
        else:
            if not hasattr(module, "from_download"):
                raise DatasetError(f"dataset {ds.name} has no public archive to download: {ds.download.note}")
            raw = fetch(ds.download.url, ds.download.sha256, cfg.raw_dir, ds.download.filename)
            frames = module.from_download(raw, params, int(cfg.seed))
        if hasattr(module, "prepare"):  # splits, subsets: the same whatever the source
            frames = module.prepare(frames, params, int(cfg.seed))
    for atoms in frames:
        atoms.info.update(dataset=ds.name, scale=scale, source=ds.source)
    return frames


def write(cfg: DictConfig) -> None:
    if not cfg.output:
        raise ValueError("pass output=<path of the extxyz to write>")
    t0 = time.perf_counter()
    frames = run(cfg)
    path = write_frames(frames, cfg.output)
    log.info("wrote %d structures to %s in %.1f s", len(frames), path, time.perf_counter() - t0)


main = entry_point(write)

if __name__ == "__main__":
    main()
