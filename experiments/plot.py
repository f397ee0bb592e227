"""Stage "plot_fig<N>": one figure from its analysis outputs, as pdf and png, in the shared style.

    python -m experiments.plot experiment=<name> inputs='{table: <csv>, ...}' output=<pdf>

``experiments/<name>.py`` defines ``plot(cfg) -> matplotlib Figure``, reading its inputs by the
names of the analysis outputs; every figure is drawn with ``experiments/figures.mplstyle``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ._stage import entry_point
from ._tables import save_figure
from .config import experiment_module

STYLE = Path(__file__).with_name("figures.mplstyle")


def figure(cfg: DictConfig):
    """The experiment's figure, drawn in the shared style (not saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg.get("experiment") is None:
        raise ValueError("the plot stage needs experiment=<name> (one of config/experiment/*.yaml)")
    name = cfg.experiment.name
    module = experiment_module(name)
    if not hasattr(module, "plot"):
        raise NotImplementedError(f"experiment {name}: experiments/{name}.py has no plot() yet")
    with plt.style.context(STYLE):
        return module.plot(cfg)


def write(cfg: DictConfig) -> None:
    import matplotlib.pyplot as plt

    if not cfg.output:
        raise ValueError("pass output=<path of the pdf to write>")
    fig = figure(cfg)
    save_figure(fig, cfg.output)
    plt.close(fig)


main = entry_point(write)

if __name__ == "__main__":
    main()
