"""Stage "analyse_fig<N>": an experiment's rigidity analysis, from its inputs to its result files.

    python -m experiments.analyse experiment=<name> inputs='{<key>: <path>, ...}' outputs='{table: <csv>, ...}'

``experiments/<name>.py`` defines ``analyse(cfg) -> dict[output name, result]``: a
:class:`~experiments._tables.Table` for ``table`` (and any other csv), a list of ASE
structures for an ``.extxyz`` output. This entry point only writes them, to the files
the rule names (``outputs``); the analysis itself never touches a file it does not read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ._results import atomic_path
from ._stage import entry_point
from ._tables import Table, write_table
from .config import experiment_module

log = logging.getLogger(__name__)


def analysis(cfg: DictConfig):
    """The experiment module's ``analyse`` (its absence is an error that says so)."""
    if cfg.get("experiment") is None:
        raise ValueError("the analysis stage needs experiment=<name> (one of config/experiment/*.yaml)")
    name = cfg.experiment.name
    module = experiment_module(name)
    if not hasattr(module, "analyse"):
        raise NotImplementedError(f"experiment {name}: experiments/{name}.py has no analyse() yet; `snakemake` builds "
                                  "the implemented figures, `snakemake -n all_figures` shows the whole plan")
    return module.analyse


def write(cfg: DictConfig) -> None:
    import ase.io

    results = analysis(cfg)(cfg)
    outputs = dict(cfg.get("outputs") or {})
    missing = sorted(set(results) - set(outputs))
    if missing:
        raise ValueError(f"the analysis returned {missing}, which outputs= does not name (it names {sorted(outputs)})")
    for name, result in results.items():
        path = Path(outputs[name])
        if isinstance(result, Table):
            write_table(result, path, scale=cfg.scale.name)
        elif path.suffix == ".extxyz":
            with atomic_path(path) as tmp:
                ase.io.write(tmp, list(result), format="extxyz")
        else:
            raise TypeError(f"analysis output {name!r}: cannot write a {type(result).__name__} to {path}")
        log.info("wrote %s to %s", name, path)


main = entry_point(write)

if __name__ == "__main__":
    main()
