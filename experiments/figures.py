"""Stage "figures": one plotting function per figure, from result tables to pdf + png.

    python -m experiments.figures experiment=<name> scale=<scale> inputs='[...]' output=<path>

``inputs`` are the files the Snakemake rule names as inputs, ``output`` is the pdf (a png is written beside it).
Each experiment module (``experiments/<experiment>.py``) defines the function ``STAGES`` names.
"""

from __future__ import annotations

from ._stage import Stage, entry_point

#: experiment name -> figure function taking the composed config
STAGES: dict[str, Stage] = {
    "fig4_pr_augmentation": "experiments.fig4_pr_augmentation:figure",
    "fig5_active_learning": "experiments.fig5_active_learning:figure",
    "fig6_body_order": "experiments.fig6_body_order:figure",
    "fig7_range_separation": "experiments.fig7_range_separation:figure",
}

main = entry_point("figure", STAGES)

if __name__ == "__main__":
    main()
