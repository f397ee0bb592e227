"""Entry points of the workflow stages (data, training, rigidity analyses, figures).

Each stage runs as ``python -m experiments.<stage> experiment=<name> ...`` from a
Snakemake rule; the mathematics lives in the ``rigidity`` package.
"""
