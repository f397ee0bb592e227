"""Stage "figures": one plotting function per figure, from result tables to pdf + png.

    python -m experiments.figures experiment=<name> scale=<scale> inputs='[...]' output=<path>

``inputs`` are the files the Snakemake rule names as inputs, ``output`` is the pdf (a png is written beside it).
Each experiment registers its function in ``STAGES`` when its figure is implemented.
"""

from __future__ import annotations

from ._stage import Stage, entry_point

#: experiment name -> figure function taking the composed config
STAGES: dict[str, Stage] = {}

main = entry_point("figure", STAGES)

if __name__ == "__main__":
    main()
