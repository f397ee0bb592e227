"""Dispatch of the per-experiment stages (training, rigidity analysis, figure)."""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig

Stage = Callable[[DictConfig], Any]


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
    return registry[name](cfg)


def entry_point(stage: str, registry: dict[str, Stage]) -> Callable[[], None]:
    """The ``@hydra.main`` entry point of a stage: composes config/main.yaml with the command line."""
    import hydra

    @hydra.main(version_base="1.3", config_path="../config", config_name="main")
    def main(cfg: DictConfig) -> None:
        dispatch(stage, cfg, registry)

    return main
