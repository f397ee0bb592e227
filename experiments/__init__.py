"""The workflow that regenerates the paper's figures: stage entry points, models, one module per figure.

Each stage runs as ``python -m experiments.<stage> ...`` from a Snakemake rule
(experiments/rules/): ``data``, ``features``, ``train``, ``hessian``, ``md``,
``analyse``, ``plot``. ``experiments.models`` holds one module per model,
``experiments.<figure>`` one per figure, ``experiments.datasets`` the datasets;
``config`` the schemas of every config, ``workflow`` the plan of every job. The
mathematics lives in the ``rigidity`` package.
"""
