"""The Snakemake workflow: schema, DAG, lint, profiles, configs, and data rules at smoke scale."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import compose

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which("snakemake")
EXPERIMENTS = sorted(p.stem for p in (ROOT / "config" / "experiment").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (ROOT / "config" / "dataset").glob("*.yaml"))

needs_snakemake = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


def _snakemake(*args, cwd=ROOT, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@needs_snakemake
def test_dry_run_shows_the_chain_from_data_to_figures(tmp_path):
    out = _snakemake("-n", "all_figures", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    for rule in ("prepare_dataset", "train_models", "compute_rigidities", "plot_figure"):
        assert f"rule {rule}:" in text or f"{rule}" in text.split("Job stats")[-1], rule
    for experiment in EXPERIMENTS:
        assert f"figures/{experiment}.pdf" in text
    for dataset in DATASETS:
        assert f"data/{dataset}.extxyz" in text


@needs_snakemake
def test_default_target_builds_every_dataset(tmp_path):
    out = _snakemake("-n", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stdout + out.stderr
    for dataset in DATASETS:
        assert f"data/{dataset}.extxyz" in out.stdout + out.stderr


@needs_snakemake
def test_lint_reports_nothing():
    out = _snakemake("--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "good condition" in out.stdout + out.stderr


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


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes(experiment, scale):
    cfg = compose([f"experiment={experiment}", f"scale={scale}"])
    assert cfg.experiment.name == experiment
    assert cfg.scale.name == scale
    assert cfg.dataset.name in cfg.experiment.datasets  # the experiment's main dataset is one it reads
    for name in cfg.experiment.datasets:
        assert name in DATASETS, f"{experiment} reads unknown dataset {name}"
    assert cfg.model.name


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_config_validates(dataset, scale):
    from experiments.data import dataset_config, generator_params
    from experiments.datasets import dataset_module

    cfg = compose([f"dataset={dataset}", f"scale={scale}"])
    ds = dataset_config(cfg)
    assert ds.name == dataset
    params = generator_params(ds, scale, dataset_module(dataset).Params)
    assert params is not None


def test_a_typo_in_a_dataset_key_fails_loudly():
    from experiments.data import dataset_config

    with pytest.raises(Exception, match="sourse"):
        dataset_config(compose(["dataset=si_nmers", "+dataset.sourse=file"]))


@needs_snakemake
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
    config.write_text(
        yaml.safe_dump(
            {
                "scale": "smoke",
                "results": str(tmp_path / "results"),
                "dataset_overrides": {
                    "si_nmers": [
                        "dataset.source=file",
                        f"dataset.file.path={user}",
                        "dataset.file.energy_key=my_energy",
                        "dataset.file.reference_method=hand-made test dimers",
                    ]
                },
            }
        )
    )
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


def test_stage_dispatch_names_what_is_missing():
    from experiments import figures, train
    from experiments._stage import dispatch

    with pytest.raises(NotImplementedError, match="fig1_uncertainty_vs_error: its training stage is not implemented"):
        dispatch("training", compose(["experiment=fig1_uncertainty_vs_error"]), {})
    # every registered stage names a function that exists
    from experiments import rigidity
    from experiments._stage import resolve

    for registry in (train.STAGES, rigidity.STAGES, figures.STAGES):
        for name, stage in registry.items():
            assert callable(resolve(stage)), name
    with pytest.raises(ValueError, match="needs experiment=<name>"):
        dispatch("figure", compose([]), figures.STAGES)
    calls = []
    dispatch("figure", compose(["experiment=fig7_range_separation"]), {"fig7_range_separation": calls.append})
    assert calls and calls[0].experiment.name == "fig7_range_separation"


def implemented_experiments():
    import ast
    import re

    text = (ROOT / "experiments" / "rules" / "common.smk").read_text()
    return ast.literal_eval(re.search(r"^IMPLEMENTED = (\[.*?\])", text, re.M | re.S).group(1))


@needs_snakemake
def test_default_target_builds_the_implemented_figures_at_smoke_scale(tmp_path):
    """`snakemake` as a user runs it (default target), at smoke scale: data -> features -> tables -> figures."""
    implemented = implemented_experiments()
    assert {"fig4_pr_augmentation", "fig5_active_learning", "fig6_body_order", "fig7_range_separation"} <= set(implemented)
    out = _snakemake("--cores", "2", "--config", "scale=smoke", f"results={tmp_path}/results", timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for experiment in implemented:
        for ext in ("pdf", "png"):
            assert (tmp_path / "results" / "smoke" / "figures" / f"{experiment}.{ext}").stat().st_size > 1000
        table = (tmp_path / "results" / "smoke" / "tables" / f"{experiment}.csv").read_text().splitlines()
        assert table[0].startswith("scale,reference_method,") and len(table) > 5
        assert all(line.startswith("smoke,") for line in table[1:])
