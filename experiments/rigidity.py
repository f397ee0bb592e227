"""Stage "rigidity": PR / LPR / CPR analyses of an experiment into a result table.

    python -m experiments.rigidity experiment=<name> scale=<scale> inputs='[...]' output=<path>

``inputs`` are the files the Snakemake rule names as inputs, ``output`` is the result table (csv).
Each experiment module (``experiments/<experiment>.py``) defines the function ``STAGES`` names.
"""

from __future__ import annotations

from ._stage import Stage, entry_point

#: experiment name -> rigidity analysis function taking the composed config
STAGES: dict[str, Stage] = {
    "fig4_pr_augmentation": "experiments.fig4_pr_augmentation:rigidity",
    "fig5_active_learning": "experiments.fig5_active_learning:rigidity",
    "fig6_body_order": "experiments.fig6_body_order:rigidity",
    "fig7_range_separation": "experiments.fig7_range_separation:rigidity",
}

main = entry_point("rigidity analysis", STAGES)

if __name__ == "__main__":
    main()
