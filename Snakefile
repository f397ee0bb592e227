# Table of contents of the workflow that regenerates the figures of
# Chong et al., "Prediction rigidities for data-driven chemistry" (Faraday Discuss. 2024).
# Snakemake owns files and order; Hydra configs under config/ own the parameters;
# the rigidity library owns the mathematics.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/workflow.yaml"


include: "experiments/rules/common.smk"


rule all:
    input:
        get_figure_targets(),
