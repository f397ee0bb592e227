"""Stage "train": the expensive step of an experiment (training models, computing descriptors).

    python -m experiments.train experiment=<name> scale=<scale> inputs='[...]' output=<path>

``inputs`` are the files the Snakemake rule names as inputs, ``output`` is the manifest (json) listing what it wrote beside it.
Each experiment registers its function in ``STAGES`` when its figure is implemented.
"""

from __future__ import annotations

from ._stage import Stage, entry_point

#: experiment name -> training function taking the composed config
STAGES: dict[str, Stage] = {}

main = entry_point("training", STAGES)

if __name__ == "__main__":
    main()
