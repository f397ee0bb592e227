"""Dispatch of the per-experiment stages (training, rigidity analysis, figure)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Union

from omegaconf import DictConfig

#: a stage function, or "module:function" imported when the stage runs (keeps imports light)
Stage = Union[Callable[[DictConfig], Any], str]


def resolve(stage: Stage) -> Callable[[DictConfig], Any]:
    """The function a registry entry names."""
    if callable(stage):
        return stage
    module, _, function = stage.partition(":")
    return getattr(importlib.import_module(module), function)


def dispatch(stage: str, cfg: DictConfig, registry: dict[str, Stage]) -> Any:
    """Run the ``stage`` function registered for ``cfg.experiment.name``."""
    experiment = cfg.get("experiment")
    if experiment is None:
        raise ValueError(f"the {stage} stage needs experiment=<name> (one of config/experiment/*.yaml)")
    name = experiment.name
    if name not in registry:
        done = ", ".join(sorted(registry)) or "none yet"
        raise NotImplementedError(
            f"experiment {name}: its {stage} stage is not implemented yet (implemented: {done}); "
            "`snakemake` builds the implemented figures, `snakemake -n all_figures` shows the whole plan"
        )
    return resolve(registry[name])(cfg)


def entry_point(stage: str, registry: dict[str, Stage]) -> Callable[[], None]:
    """The ``@hydra.main`` entry point of a stage: composes config/main.yaml with the command line."""
    import hydra

    # an absolute path: hydra resolves a relative one against the module defining `main`
    # (this one, imported as a package module), where it would look for a python package
    config_dir = str(Path(__file__).resolve().parents[1] / "config")

    @hydra.main(version_base="1.3", config_path=config_dir, config_name="main")
    def main(cfg: DictConfig) -> None:
        dispatch(stage, cfg, registry)

    return main


def scaled_settings(cfg: DictConfig, nodes: tuple[str, ...] = ("experiment", "model")) -> dict[str, dict]:
    """Plain dicts of config nodes with their per-scale ``sizes[cfg.scale.name]`` entry merged in (key by key)."""
    from omegaconf import OmegaConf

    out = {}
    for node in nodes:
        base = OmegaConf.to_container(cfg[node], resolve=True)
        sizes = base.pop("sizes", {}) or {}
        out[node] = OmegaConf.to_container(OmegaConf.merge(base, sizes.get(cfg.scale.name, {}) or {}), resolve=True)
    return out
