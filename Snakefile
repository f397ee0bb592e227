# Table of contents of the workflow that regenerates the figures of
# Chong et al., "Prediction rigidities for data-driven chemistry" (Faraday Discuss. 2024).
# Snakemake owns files and order; Hydra configs under config/ own the parameters (experiments/config.py);
# the rigidity library owns the mathematics. Every expensive unit is one job (README: "The workflow").

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/workflow.yaml"


validate(config, "config/workflow.schema.yaml")


include: "experiments/rules/common.smk"


wildcard_constraints:
    dataset=get_alternatives(PLAN.datasets),
    model=get_alternatives(PLAN.models),
    md=get_alternatives(PLAN.mds),
    kind="structures|atoms",
    run=RUN_PATTERN,
    rows=RUN_PATTERN,
    shard=r"\d+",
    n_shards=r"\d+",


include: "experiments/rules/data.smk"
include: "experiments/rules/features.smk"
include: "experiments/rules/train.smk"
include: "experiments/rules/hessian.smk"
include: "experiments/rules/md.smk"
include: "experiments/rules/figures.smk"


rule all:
    input:
        get_dataset_targets(),
        get_figure_targets(IMPLEMENTED),


rule all_figures:
    input:
        get_figure_targets(EXPERIMENTS),
