"""Stage "run_md": one MD trajectory of a trained network (Figs 8-9), and the schema of config/md/.

    python -m experiments.md md=<protocol> model=<network> dataset=<d> run=<run key> inputs='{...}' output=<extxyz>
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING, DictConfig

__all__ = ["MDConfig", "run"]


@dataclass
class MDConfig:
    name: str = MISSING  # the protocol's config name: results/<scale>/trajectories/<name>/...
    integrator: str = "langevin"  # ASE Langevin dynamics
    timestep: float = MISSING  # fs
    temperature: float = MISSING  # K
    friction: float = MISSING  # 1/fs, Langevin friction
    n_steps: int = MISSING  # steps per trajectory
    stride: int = MISSING  # steps between saved frames
    seed: int = 0  # seed of the Langevin noise and the initial velocities


def run(cfg: DictConfig):
    raise NotImplementedError(
        f"run_md: MD of {cfg.model.name if cfg.get('model') else 'a network'} is not implemented yet: it needs the "
        "last-layer ASE calculator of rigidity.last_layer (the coarse-grained water issue adds it)"
    )


def _write(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    from ._stage import entry_point

    entry_point(_write)()
