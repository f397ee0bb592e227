"""Stage "train": the expensive step of an experiment (training models, computing descriptors).

    python -m experiments.train experiment=<name> scale=<scale> inputs='[...]' output=<path>

``inputs`` are the files the Snakemake rule names as inputs, ``output`` is the manifest (json) listing what it wrote beside it.
Each experiment module (``experiments/<experiment>.py``) defines the function ``STAGES`` names.
"""

from __future__ import annotations

from ._stage import Stage, entry_point

#: experiment name -> training function taking the composed config
STAGES: dict[str, Stage] = {
    "fig4_pr_augmentation": "experiments.fig4_pr_augmentation:train",
    "fig5_active_learning": "experiments.fig5_active_learning:train",
    "fig6_body_order": "experiments.fig6_body_order:train",
    "fig7_range_separation": "experiments.fig7_range_separation:train",
}

main = entry_point("training", STAGES)

if __name__ == "__main__":
    main()
