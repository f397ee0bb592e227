"""Entry points of the stages: Hydra composes config/main.yaml with the command line, a thin writer runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import CONFIG_DIR, register

__all__ = ["entry_point", "typed", "input_path"]


def entry_point(write: Callable[[DictConfig], None]) -> Callable[[], None]:
    """The ``@hydra.main`` entry point of a stage whose writer is ``write(cfg)``."""
    import hydra

    register()

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="main")
    def main(cfg: DictConfig) -> None:
        write(cfg)

    return main


def typed(node: Any) -> Any:
    """A composed config node as its dataclass (``OmegaConf.to_object``): typed attribute access."""
    if node is None:
        return None
    return OmegaConf.to_object(node) if OmegaConf.is_config(node) else node


def input_path(cfg: DictConfig, key: str) -> str:
    """The file the rule named ``key`` among the stage's inputs (``inputs={key: path, ...}``)."""
    inputs = cfg.get("inputs") or {}
    if key not in inputs:
        raise ValueError(f"this stage needs the input {key!r}; inputs= names {sorted(inputs) or 'nothing'} "
                         "(Snakemake passes them; by hand: inputs='{" + key + ": path}')")
    return str(inputs[key])
