"""The Snakemake workflow (tier workflow): DAG, rule names, lint, profiles, the smoke scale end to end, and what
reruns when a config value or a stage's code changes."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.config import names
from experiments.workflow import Plan

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which("snakemake")
EXPERIMENTS, DATASETS = names("experiment"), names("dataset")
#: what a workflow needs to run from a copy: the Snakefile, configs, profiles, the code and the shipped data
TREE = ("Snakefile", "config", "profiles", "experiments", "rigidity", "data")

needs_snakemake = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
#: what running the smoke scale needs beyond the workflow extra: the reference calculators and featomic (Fig 7)
MISSING = [m for m in ("featomic", "tblite", "openmm", "matscipy") if importlib.util.find_spec(m) is None]
needs_models = pytest.mark.skipif(bool(MISSING), reason=f"running the stages needs {MISSING} (the models extra)")


def _snakemake(*args, cwd=ROOT, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(output: str) -> Counter:
    """Jobs per rule from the "Job stats" table of a dry run (the 'all' pseudo-rules left out)."""
    if "Nothing to be done" in output:
        return Counter()
    table = output.split("Job stats:")[1].split("total")[0]
    counts = Counter()
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) not in ("all", "all_figures", "job"):
            counts[m.group(1)] = int(m.group(2))
    return counts


@needs_snakemake
def test_dry_run_shows_the_chain_from_data_to_figures(tmp_path):
    out = _snakemake("-n", "all_figures", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout + out.stderr
    counts = job_counts(out.stdout)
    for rule in ("prepare_dataset", "compute_features", "fit_model", "train_model", "accumulate_hessian",
                 "merge_hessian", "run_md"):
        assert counts[rule] > 0, rule
    for experiment in EXPERIMENTS:
        figure = int(experiment[3])
        assert counts[f"analyse_fig{figure}"] == 1 and counts[f"plot_fig{figure}"] == 1
        assert f"figures/{experiment}.pdf" in out.stdout
    for dataset in DATASETS:
        assert f"data/{dataset}.extxyz" in out.stdout
    for rule in counts:  # verb_noun rule names
        assert re.fullmatch(r"[a-z]+_[a-z0-9_]+", rule), rule


@needs_snakemake
def test_paper_scale_on_slurm_has_one_job_per_model_shard_and_figure(tmp_path):
    """The counts are those the experiment configs imply, computed here from the plan, not from Snakemake."""
    out = _snakemake("-n", "--profile", "profiles/slurm", "all_figures",
                     "--config", "scale=paper", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = job_counts(out.stdout)
    plan = Plan({"scale": "paper", "results": str(tmp_path / "results")}, cache_dir=None)
    keys = {k for e in plan.experiments.values() for k in e.inputs}
    models = {k for k in keys if k.startswith("models/")}
    network = {k for k in models if plan.kind(k.split("/")[1]) == "network"}
    hessians = {k for k in keys if k.startswith("hessians/")}
    assert counts["train_model"] == len(network) == 53  # 15 SOAP-BPNN, 11 PaiNN, 11 MACE (Si), 16 MACE (CG water)
    assert counts["fit_model"] == len(models - network) == 18  # Fig 6: 2 x 4; Fig 7: 2 x 5
    assert counts["merge_hessian"] == len(hessians)
    assert counts["accumulate_hessian"] == len(hessians) * plan.hessian_shards
    assert counts["run_md"] == 16 and counts["prepare_dataset"] == len(DATASETS)
    # the GPU goes to network training and MD only
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu = {rule for rule, res in profile["set-resources"].items() if "gres" in res}
    assert gpu == {"train_model", "run_md"}
    assert profile["default-resources"]["slurm_partition"] == "cpu"


@needs_snakemake
def test_default_target_builds_every_dataset_and_the_implemented_figures(tmp_path):
    out = _snakemake("-n", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout + out.stderr
    for dataset in DATASETS:
        assert f"data/{dataset}.extxyz" in out.stdout
    implemented = Plan({"scale": "quick", "results": "results"}, cache_dir=None).implemented()
    assert set(implemented) == {"fig1_uncertainty_vs_error", "fig2_local_variance_vs_lpr", "fig3_learning_dynamics",
                                "fig4_pr_augmentation", "fig5_active_learning", "fig6_body_order",
                                "fig7_range_separation", "fig8_cg_water", "fig9_cg_water_instability"}
    for experiment in EXPERIMENTS:
        assert (f"figures/{experiment}.pdf" in out.stdout) == (experiment in implemented)


@needs_snakemake
def test_lint_reports_nothing_but_the_missing_conda_directives():
    """Every rule runs in the one pinned environment (.venv, or environment.yml for conda users); per-rule
    `conda:` directives were removed because `--sdm conda` cannot be built and tested here (no conda channel is
    reachable from this project's machines). That is the only lint left."""
    out = _snakemake("--lint")
    text = out.stdout + out.stderr
    assert "Lints for snakefile" not in text, text
    titles = re.findall(r"^\s+\* (.+?):$", text, re.M)
    assert titles and set(titles) == {"Specify a conda environment or container for each rule."}, set(titles)


@needs_snakemake
@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_profiles_dry_run(profile, tmp_path):
    out = _snakemake("-n", "--profile", f"profiles/{profile}", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout + out.stderr


@needs_snakemake
def test_config_is_validated_against_its_schema():
    out = _snakemake("-n", "--config", "scale=huge")
    assert out.returncode != 0
    assert "huge" in out.stdout + out.stderr and "enum" in (out.stdout + out.stderr).lower()


@needs_snakemake
def test_a_bad_experiment_value_fails_the_dry_run(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scale": "smoke", "results": str(tmp_path / "results"),
                                      "experiment_overrides": {"fig6_body_order":
                                                               ["experiment.plot.cpr_statistic=max"]}}))
    out = _snakemake("-n", "--configfile", str(config))
    assert out.returncode != 0 and "cpr_statistic must be one of" in out.stdout + out.stderr


def test_stage_entry_points_name_what_is_missing(monkeypatch):
    """An experiment module without analyse() or plot(): a stand-in (every figure has both now)."""
    import types

    from conftest import compose

    from experiments import analyse, plot

    monkeypatch.setattr(analyse, "experiment_module", lambda name: types.SimpleNamespace())
    monkeypatch.setattr(plot, "experiment_module", lambda name: types.SimpleNamespace())
    with pytest.raises(NotImplementedError, match="fig8_cg_water.py has no analyse"):
        analyse.analysis(compose(["experiment=fig8_cg_water"]))
    with pytest.raises(NotImplementedError, match="has no plot"):
        plot.figure(compose(["experiment=fig8_cg_water"]))
    with pytest.raises(ValueError, match="needs experiment=<name>"):
        analyse.analysis(compose([]))


def test_a_network_without_training_says_so(tmp_path, monkeypatch):
    """A network module without train(): a stand-in, soap_bpnn's module with its train removed (all networks train)."""
    from conftest import compose

    from experiments import train
    from experiments.data import run as make_dataset
    from experiments.datasets.io import write_frames
    from experiments.models import soap_bpnn

    data = tmp_path / "qm9.extxyz"
    write_frames(make_dataset(compose(["dataset=qm9", "scale=smoke"])), data)
    cfg = compose(["model=soap_bpnn", "dataset=qm9", "scale=smoke", "run=n10", f"inputs={{data/qm9: {data}}}"])
    monkeypatch.delattr(soap_bpnn, "train")
    with pytest.raises(NotImplementedError, match="training soap_bpnn networks is not implemented yet"):
        train.run(cfg)


@needs_snakemake
@needs_models
@pytest.mark.slow
def test_every_data_rule_runs_at_smoke_scale(tmp_path):
    # one dataset comes from a user file through the workflow's dataset_overrides
    from ase import Atoms

    from experiments.datasets.io import read_frames, write_frames

    user = tmp_path / "user.extxyz"
    frames = []
    for i in range(3):
        a = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.2 + 0.1 * i]])
        a.info["my_energy"] = -4.0 - 0.1 * i
        a.arrays["forces"] = np.zeros((2, 3))
        frames.append(a)
    write_frames(frames, user)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "scale": "smoke",
        "results": str(tmp_path / "results"),
        "dataset_overrides": {"si_nmers": ["dataset.source=file", f"dataset.file.path={user}",
                                           "dataset.file.energy_key=my_energy",
                                           "dataset.file.reference_method=hand-made test dimers"]},
    }))
    targets = [str(tmp_path / "results" / "smoke" / "data" / f"{d}.extxyz") for d in DATASETS]
    out = _snakemake(*targets, "--cores", "2", "--configfile", str(config), timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for dataset in DATASETS:
        path = tmp_path / "results" / "smoke" / "data" / f"{dataset}.extxyz"
        got = read_frames(path, energy_key=None, forces_key=None)
        assert got and all(a.info["scale"] == "smoke" and a.info["dataset"] == dataset for a in got)
        assert all(a.info.get("reference_method") for a in got), dataset
    user_frames = read_frames(tmp_path / "results" / "smoke" / "data" / "si_nmers.extxyz")
    assert [a.info["energy"] for a in user_frames] == pytest.approx([-4.0, -4.1, -4.2])
    assert {a.info["reference_method"] for a in user_frames} == {"hand-made test dimers"}
    assert {a.info["source"] for a in user_frames} == {"file"}
