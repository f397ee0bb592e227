# Helpers shared by all rules (the plan of every job, experiments/workflow.py, and the get_* input functions).
# No lambdas inside rules; every rule has a log, named inputs and outputs, and params that carry the digests of the
# config section and the code its stage reads (Snakemake's params rerun trigger).

import os
import sys
from pathlib import Path

from experiments import layout
from experiments.runs import RUN_PATTERN
from experiments.workflow import Plan, hydra_dict

# The interpreter of this environment, through a variable: a path in the shell text would be part of every rule's
# code (Snakemake's code rerun trigger), and a venv at another path would rerun everything.
os.environ["RIGIDITY_PYTHON"] = sys.executable
PYTHON = '"$RIGIDITY_PYTHON"'


envvars:
    "RIGIDITY_PYTHON",


PLAN = Plan(config)
SCALE = PLAN.scale
RESULTS = PLAN.results
EXPERIMENTS = list(PLAN.experiments)
IMPLEMENTED = PLAN.implemented()


def get_alternatives(names):
    """A regular expression matching exactly these names (the wildcard constraints of the Snakefile)."""
    return "|".join(names) if names else "(?!x)x"


LINEAR_MODELS = get_alternatives(PLAN.models_of_kind("linear"))
NETWORK_MODELS = get_alternatives(PLAN.models_of_kind("network"))
# one thread per job unless the profile sets more for a rule (set-threads); OpenMP and BLAS pools follow Snakemake
THREADS = "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"


def get_dataset_targets():
    return PLAN.dataset_targets()


def get_figure_targets(experiments):
    return PLAN.figure_targets(experiments)


def get_data_input(wildcards):
    return {"data": PLAN.path(layout.data_key(wildcards.dataset))}


def get_fit_inputs(wildcards):
    return {"data": PLAN.path(layout.data_key(wildcards.dataset)),
            "features": PLAN.path(layout.features_key(wildcards.model, wildcards.dataset, "structures"))}


def get_train_inputs(wildcards):
    return {"data": PLAN.path(layout.data_key(wildcards.dataset))}


def get_shard_inputs(wildcards):
    inputs = {"data": PLAN.path(layout.data_key(wildcards.dataset))}
    if PLAN.kind(wildcards.model) == "network":  # last-layer rows: the trained network of that run
        inputs["model"] = PLAN.path(layout.model_key(wildcards.model, wildcards.dataset, wildcards.rows))
    return inputs


def get_hessian_shards(wildcards):
    key = layout.hessian_key(wildcards.model, wildcards.dataset, wildcards.rows)
    n = PLAN.hessian_shards
    return [f"{RESULTS}/{layout.shard_path(key, k, n)}" for k in range(n)]


def get_md_inputs(wildcards):
    """The dataset (start frame), the trained network and H of its own training rows (the PR along the run)."""
    return {"data": PLAN.path(layout.data_key(wildcards.dataset)),
            "model": PLAN.path(layout.model_key(wildcards.model, wildcards.dataset, wildcards.run)),
            "hessian": PLAN.path(layout.hessian_key(wildcards.model, wildcards.dataset, wildcards.run))}


def get_named_inputs(experiment):
    """An analysis rule's inputs, named after their keys (experiments/layout.py) made identifiers."""
    return {layout.input_name(key): path for key, path in PLAN.experiments[experiment].inputs.items()}


def get_stage_inputs(wildcards, input):
    """The rule's named inputs as the stage's inputs={key: path}, keyed as experiments/layout.py spells them."""
    keys = {"data": layout.data_key(wildcards.dataset)}
    if "features" in input.keys():
        keys["features"] = layout.features_key(wildcards.model, wildcards.dataset, "structures")
    run = getattr(wildcards, "rows", None) or getattr(wildcards, "run", None)
    if "model" in input.keys():
        keys["model"] = layout.model_key(wildcards.model, wildcards.dataset, run)
    if "hessian" in input.keys():
        keys["hessian"] = layout.hessian_key(wildcards.model, wildcards.dataset, run)
    return hydra_dict({keys[name]: path for name, path in input.items()})


def get_shard_list(wildcards, input):
    return hydra_dict({"shards": list(input.shards)})


# The user's overrides (config/workflow.yaml) reach a stage's command line through these params. They take
# `output` so that Snakemake does not compare them between runs: what they change is compared through the digests
# of the config sections each stage reads (a plot-only override must not rerun an analysis).


def get_dataset_overrides(wildcards, output):
    return PLAN.overrides_arg(dataset=wildcards.dataset)


def get_model_overrides(wildcards, output):
    return PLAN.overrides_arg(model=wildcards.model, dataset=getattr(wildcards, "dataset", None))


def get_md_overrides(wildcards, output):
    return PLAN.overrides_arg(md=wildcards.md, model=wildcards.model, dataset=wildcards.dataset)


def get_experiment_overrides(wildcards, output):
    """The overrides of an analysis or plot job: its experiment's and its selected model's."""
    name = Path(output[0]).name.split(".")[0]  # tables/<name>.csv, figures/<name>.pdf
    return PLAN.overrides_arg(experiment=name, model=PLAN.experiments[name].model)


def get_dataset_source(wildcards):
    """The user's file of a dataset with source=file: an input, so that editing it reruns the dataset."""
    path = PLAN.dataset_file(wildcards.dataset)
    return {"source": path} if path else {}


def get_dataset_digest(wildcards):
    return PLAN.dataset_digest(wildcards.dataset)


def get_dataset_code(wildcards):
    return PLAN.dataset_code(wildcards.dataset)


def get_features_digest(wildcards):
    return PLAN.features_digest(wildcards.model)


def get_features_code(wildcards):
    return PLAN.model_code("features", wildcards.model)


def get_train_digest(wildcards):
    return PLAN.train_digest(wildcards.model, wildcards.dataset)


def get_train_code(wildcards):
    return PLAN.model_code("train", wildcards.model)


def get_hessian_digest(wildcards):
    return PLAN.hessian_digest(wildcards.model, wildcards.dataset)


def get_hessian_code(wildcards):
    return PLAN.model_code("hessian", wildcards.model)


def get_merge_code():
    return PLAN.stage_code("hessian")


def get_md_digest(wildcards):
    return PLAN.md_digest(wildcards.md)


def get_md_code(wildcards):
    return PLAN.model_code("md", wildcards.model)
