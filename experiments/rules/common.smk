# Helpers shared by the rule files (no lambdas inside rules).

import shlex
import sys
from pathlib import Path

import yaml

PYTHON = sys.executable
SCALE = config["scale"]
RESULTS = f"{config['results']}/{SCALE}"
DATASETS = sorted(p.stem for p in Path("config/dataset").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in Path("config/experiment").glob("*.yaml"))

# Experiments whose stages are implemented: `rule all` asks for their figures.
# `rule all_figures` asks for all nine, for the whole DAG (snakemake -n all_figures).
IMPLEMENTED = ["fig4_pr_augmentation", "fig5_active_learning", "fig6_body_order", "fig7_range_separation"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    experiment="|".join(EXPERIMENTS),


def experiment_config(name):
    """The `experiment` node of config/experiment/<name>.yaml."""
    return yaml.safe_load(Path(f"config/experiment/{name}.yaml").read_text())["experiment"]


def get_dataset_targets():
    return [f"{RESULTS}/data/{d}.extxyz" for d in DATASETS]


def get_experiment_datasets(wildcards):
    return [f"{RESULTS}/data/{d}.extxyz" for d in experiment_config(wildcards.experiment)["datasets"]]


def get_dataset_overrides(wildcards):
    """Extra Hydra overrides of one dataset's data stage, shell-quoted."""
    extra = config.get("dataset_overrides", {}).get(wildcards.dataset, [])
    return " ".join(shlex.quote(o) for o in extra)


def get_hydra_inputs(wildcards, input):
    """The rule's input files as one Hydra list override value: [a,b,...]."""
    return "'[" + ",".join(str(f) for f in input) + "]'"


def get_figure_targets(experiments):
    return [f"{RESULTS}/figures/{e}.{ext}" for e in experiments for ext in ("pdf", "png")]
