"""Stage "data": build one dataset and write it as extended XYZ.

    python -m experiments.data dataset=si_clusters scale=quick output=results/quick/data/si_clusters.extxyz

The dataset's ``source`` decides where the structures come from: ``generate``
(offline generator with an embedded reference calculator, the default),
``file`` (any extxyz the user names, checked frame by frame) or ``download``
(the public archive, fetched once into ``raw_dir`` and checked against its
SHA-256). Every structure records its dataset, scale, source and reference method.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from .datasets import dataset_module
from .datasets.download import fetch
from .datasets.io import DatasetError, Reference, annotate, read_frames, write_frames

log = logging.getLogger(__name__)

SOURCES = ("download", "file", "generate")
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class FileSource:
    path: Optional[str] = None  # extxyz file read when source=file
    energy_key: Optional[str] = "energy"  # info key of the total energy (eV)
    forces_key: Optional[str] = "forces"  # arrays key of the forces (eV/A); null when absent
    reference_method: Optional[str] = None  # what computed the file's labels (required)


@dataclasses.dataclass
class DownloadSource:
    url: Optional[str] = None  # public archive
    sha256: Optional[str] = None  # its checksum
    filename: Optional[str] = None  # name under raw_dir (default: from the URL)
    note: str = ""  # where the archive comes from, or why there is none


@dataclasses.dataclass
class DatasetConfig:
    name: str  # dataset name, also the output file's stem
    description: str  # one line: what the structures are and which figures use them
    source: Any  # download | file | generate, or one per scale: {smoke: file, quick: file, paper: download}
    periodic: bool  # structures carry a cell
    file: FileSource = dataclasses.field(default_factory=FileSource)
    download: DownloadSource = dataclasses.field(default_factory=DownloadSource)
    generate: Any = dataclasses.field(default_factory=dict)  # generator parameters (module Params)
    sizes: Any = dataclasses.field(default_factory=dict)  # per scale: sizes merged over `generate`


def dataset_config(cfg: DictConfig) -> DatasetConfig:
    """The dataset node checked against :class:`DatasetConfig` (unknown keys fail)."""
    if cfg.get("dataset") is None:
        raise ValueError("no dataset selected: pass dataset=<name> (see config/dataset/)")
    ds = OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset)
    if OmegaConf.is_dict(ds.source):  # a default per scale; dataset.source=<one> replaces it
        scale = cfg.scale.name
        if scale not in ds.source:
            raise ValueError(f"dataset {ds.name}: source has no entry for scale {scale!r} (has {sorted(ds.source)})")
        ds.source = ds.source[scale]
    if ds.source not in SOURCES:
        raise ValueError(f"dataset {ds.name}: source={ds.source!r} is not one of {SOURCES}")
    return ds


def generator_params(ds: DatasetConfig, scale: str, params_cls: type) -> Any:
    """Generator parameters: the dataset's ``generate`` node, then its sizes at this scale."""
    if scale not in ds.sizes:
        raise ValueError(f"dataset {ds.name} has no sizes for scale {scale!r} (has {sorted(ds.sizes)})")
    merged = OmegaConf.merge(OmegaConf.structured(params_cls), ds.generate, ds.sizes[scale])
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
    params = generator_params(ds, scale, module.Params)
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


@hydra.main(version_base="1.3", config_path="../config", config_name="main")
def main(cfg: DictConfig) -> None:
    if not cfg.output:
        raise ValueError("pass output=<path of the extxyz to write>")
    t0 = time.perf_counter()
    frames = run(cfg)
    path = write_frames(frames, cfg.output)
    log.info("wrote %d structures to %s in %.1f s", len(frames), path, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
