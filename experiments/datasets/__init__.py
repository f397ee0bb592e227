"""Datasets of the paper, each from one of three sources: download | file | generate.

Each dataset module defines

- ``Params``: a dataclass of every generation parameter (unit in its comment), so
  that a typo in a config key fails loudly;
- ``generate(params: Params, seed: int) -> list[ase.Atoms]``: the offline
  generator, deterministic under ``seed``, labelling with a recorded reference;
- optionally ``from_download(path, params, seed) -> list[ase.Atoms]``: the
  conversion of the public archive (paper scale);
- optionally ``prepare(frames, params, seed) -> list[ase.Atoms]``: splits and
  subsets assigned to frames read from a file or a download.

``DATASETS`` maps a dataset name (config/dataset/<name>.yaml) to its module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DATASETS = {
    "qm9": "qm9",
    "si_clusters": "si_clusters",
    "si_nmers": "si_nmers",
    "carbon": "carbon",
    "carbon_liquid": "carbon_liquid",
    "water_dimers": "water_dimers",
    "water_monomers": "water_monomers",
    "cg_water": "cg_water",
}


def dataset_module(name: str) -> ModuleType:
    """The module implementing dataset ``name`` (imported on demand: some need heavy packages)."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not one of {sorted(DATASETS)}")
    return importlib.import_module(f"{__name__}.{DATASETS[name]}")
