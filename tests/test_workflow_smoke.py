"""The Snakemake workflow at smoke scale end to end (tier workflow), and what reruns when a config value or a
stage's code changes. Separate from test_workflow.py so that the two run on different cores (pytest-xdist)."""

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_workflow import MISSING, ROOT, SNAKEMAKE, TREE, _snakemake, job_counts

from experiments.workflow import Plan

# ----------------------------------------------------------------------------------------------
# the smoke scale end to end, and what a change reruns


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A copy of the workflow, run to completion at smoke scale (`snakemake` as a user runs it)."""
    if SNAKEMAKE is None:
        pytest.skip("snakemake is not installed")
    if MISSING:
        pytest.skip(f"running the stages needs {MISSING} (the models extra)")
    work = tmp_path_factory.mktemp("workflow")
    for name in TREE:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name, **(
            {"ignore": shutil.ignore_patterns("__pycache__", "raw")} if src.is_dir() else {}))
    out = _snakemake("--cores", "2", "--config", "scale=smoke", cwd=work, timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return work


def dry_run(work) -> Counter:
    out = _snakemake("-n", "--config", "scale=smoke", cwd=work)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return job_counts(out.stdout)


class edited:
    """Replace ``old`` by ``new`` in a file of the copy for the duration of a with-block."""

    def __init__(self, path: Path, old: str, new: str):
        self.path, self.old, self.new = path, old, new

    def __enter__(self):
        self.text = self.path.read_text()
        assert self.text.count(self.old) == 1, (self.path, self.old)
        self.path.write_text(self.text.replace(self.old, self.new))

    def __exit__(self, *exc):
        self.path.write_text(self.text)


@pytest.mark.slow
def test_smoke_run_writes_every_table_and_figure(smoke_run):
    results = smoke_run / "results" / "smoke"
    for experiment in Plan({"scale": "smoke", "results": "results"}, cache_dir=None).implemented():
        for ext in ("pdf", "png"):
            assert (results / "figures" / f"{experiment}.{ext}").stat().st_size > 1000
        table = (results / "tables" / f"{experiment}.csv").read_text().splitlines()
        assert table[0].startswith("scale,reference_method,") and len(table) > 5
        assert all(line.startswith("smoke,") for line in table[1:])
    # one file per unit of work, where the layout says
    assert (results / "models" / "ace_purified" / "si_nmers" / "set3" / "model.npz").is_file()
    assert (results / "features" / "soap_lode_rs" / "water_monomers" / "structures.npz").is_file()
    assert sorted(p.name for p in (results / "hessians" / "le_ace_local" / "carbon" / "all").iterdir()) == [
        "hessian.npz", "shard0of2.npz", "shard1of2.npz"]
    assert dry_run(smoke_run) == Counter()  # complete: nothing to do


@pytest.mark.slow
def test_the_networks_of_figs_1_to_3_and_their_tables(smoke_run):
    """One train_model job per network run, shared: the committee leaves disjoint blocks of the main training set
    out, the main SOAP-BPNN keeps its checkpoints, and each table names its dataset's reference."""
    import json

    from experiments._tables import read_table

    results = smoke_run / "results" / "smoke"
    for model, dataset, main in (("soap_bpnn", "qm9", "n20"), ("painn", "qm9", "n20"), ("mace", "si_clusters", "all")):
        manifest = json.loads((results / "models" / model / dataset / main / "manifest.json").read_text())
        rows = set(manifest["rows"])
        left_out = []
        for k in (0, 1):
            member = json.loads((results / "models" / model / dataset / f"{main}-x{k}of4" / "manifest.json")
                                .read_text())
            assert set(member["rows"]) < rows and member["run"] == f"{main}-x{k}of4"
            left_out.append(rows - set(member["rows"]))
        assert len(left_out[0]) == len(left_out[1]) == len(rows) // 4 and not left_out[0] & left_out[1]
        if model == "soap_bpnn":
            assert [c["epoch"] for c in manifest["checkpoints"]] == [0, 1]
    fig1 = read_table(results / "tables" / "fig1_uncertainty_vs_error.csv")
    reference = dict(zip(fig1["dataset"], fig1["dataset_reference"]))
    assert reference == {"qm9": "B3LYP/6-31G(2df,p) (QM9)", "si_clusters": "GFN2-xTB"}
    for model in ("soap_bpnn", "painn", "mace"):
        value = fig1[fig1["model"] == model].set_index("quantity")["value"]
        assert value["calibration_scale"] > 0 and 0 <= value["within_1_sigma"] <= value["within_3_sigma"] <= 1
    fig2 = read_table(results / "tables" / "fig2_local_variance_vs_lpr.csv")
    assert set(fig2[fig2["quantity"] == "n_train_member"]["value"]) == {15.0, 6.0}  # 3/4 of 20 molecules, 8 clusters
    fig3 = read_table(results / "tables" / "fig3_learning_dynamics.csv")
    assert list(fig3["label"]) == [f"final (epoch {fig3['epoch'].iloc[0]})", "epoch 0", "epoch 1", "n = 5",
                                   "n = 10"]


@pytest.mark.slow
def test_the_coarse_grained_water_md_of_figs_8_and_9(smoke_run):
    """One train_model, Hessian and run_md job per run; each trajectory reloads with the PR and LPR of every frame
    as the model and its H give them; Fig 9 shows the hot run's first unstable frame; every table says that the
    reference is classical water."""
    import ase.io
    import numpy as np

    from experiments._tables import read_table
    from experiments.datasets.io import read_frames
    from experiments.fig8_cg_water import llpr_of
    from experiments.models._network import subset

    results = smoke_run / "results" / "smoke"
    frames = read_frames(results / "data" / "cg_water.extxyz", energy_key=None, forces_key=None)
    table = read_table(results / "tables" / "fig8_cg_water.csv")
    fig8, floor = table[table["model"] == "mace_cg"], table[table["model"] == "reference"]
    assert list(fig8["run"]) == ["n2-b0", "n4-b0"] and list(fig8["n_train"]) == [2, 4]
    assert len(floor) == 4 and (floor["gr_l1"] > 0).all()  # windows of the reference: the sampling noise
    assert all("SPC/E" in m and "not DFT" in m for m in fig8["reference_method"])
    for run in ("n2-b0", "n4-b0"):
        traj = ase.io.read(results / "trajectories" / "cg_water_nvt" / "mace_cg" / "cg_water" / run /
                           "trajectory.extxyz", ":")
        assert [a.info["step"] for a in traj] == [0, 5, 10, 15, 20] and traj[-1].info["md_status"] == "completed"
        np.testing.assert_allclose(traj[0].positions, subset(frames, "test")[0].positions, atol=1e-7)
        inputs = {f"models/mace_cg/cg_water/{run}": results / "models" / "mace_cg" / "cg_water" / run /
                  "manifest.json", f"hessians/mace_cg/cg_water/{run}": results / "hessians" / "mace_cg" /
                  "cg_water" / run / "hessian.npz"}
        _, llpr = llpr_of({"inputs": {k: str(v) for k, v in inputs.items()}}, "mace_cg", "cg_water", run, frames)
        for a in traj[::2]:
            phi, _ = llpr.last_layer.features([a])
            np.testing.assert_allclose(a.arrays["lpr"], llpr.hessian.lpr(phi), rtol=1e-6)
            np.testing.assert_allclose(a.info["pr"], 1 / llpr.hessian.variance(phi.sum(0, keepdims=True))[0],
                                       rtol=1e-8)
        row = fig8[fig8["run"] == run].iloc[0]
        assert row["stable"] and row["n_frames"] == 5 and row["gr_l1"] > 0 and row["test_force_rmse"] > 0
    fig9 = read_table(results / "tables" / "fig9_cg_water_instability.csv")
    assert set(fig9["trajectory"]) == {"cg_water_hot/mace_cg/cg_water/n2-b0"}
    unstable = fig9[fig9["frame"] == "unstable"]
    assert unstable["md_status"].iloc[0].startswith("unstable: ")
    shown = ase.io.read(results / "tables" / "fig9_cg_water_instability.frames.extxyz", ":")
    assert [a.info["frame"] for a in shown] == ["initial", "unstable"]
    assert shown[0].arrays["lpr"].mean() == pytest.approx(1.0, rel=1e-6)  # normalised by the initial frame
    assert int(shown[1].arrays["contact"].sum()) >= 2  # the pair that stopped the run is in close contact


@pytest.mark.slow
def test_a_model_config_value_reruns_its_fits_and_their_figure_only(smoke_run):
    with edited(smoke_run / "config" / "model" / "ace.yaml", "  ridge_alpha: 1.0e-3", "  ridge_alpha: 2.0e-3"):
        counts = dry_run(smoke_run)
    # ace_purified inherits the value: both flavours' four fits, Fig 6's analysis and plot; not their features
    assert counts == Counter(fit_model=8, analyse_fig6=1, plot_fig6=1)


@pytest.mark.slow
def test_a_descriptor_value_reruns_features_fits_and_figure(smoke_run):
    with edited(smoke_run / "config" / "model" / "soap_lode_rs.yaml", "  variant: range_separated",
                "  variant: range_separated\n  box_edge: 41.0"):
        counts = dry_run(smoke_run)
    assert counts == Counter(compute_features=2, fit_model=2, analyse_fig7=1, plot_fig7=1)


@pytest.mark.slow
def test_an_analysis_value_reruns_the_analysis_and_the_plot(smoke_run):
    with edited(smoke_run / "config" / "sizes" / "experiment" / "fig4_pr_augmentation" / "smoke.yaml",
                "n_random_seeds: 2", "n_random_seeds: 3"):
        assert dry_run(smoke_run) == Counter(analyse_fig4=1, plot_fig4=1)


@pytest.mark.slow
def test_a_plot_value_reruns_the_plot_only(smoke_run):
    with edited(smoke_run / "config" / "experiment" / "fig6_body_order.yaml", "    cpr_statistic: median",
                "    cpr_statistic: mean"):
        assert dry_run(smoke_run) == Counter(plot_fig6=1)


@pytest.mark.slow
def test_a_figure_module_reruns_its_analysis_and_plot_and_a_comment_nothing(smoke_run):
    module = smoke_run / "experiments" / "fig6_body_order.py"
    with edited(module, 'STATISTICS = ("mean", "median")', 'STATISTICS = ("mean", "median")\n_EDITED = 1'):
        assert dry_run(smoke_run) == Counter(analyse_fig6=1, plot_fig6=1)
    with edited(module, 'STATISTICS = ("mean", "median")', 'STATISTICS = ("mean", "median")  # a comment'):
        assert dry_run(smoke_run) == Counter()


@pytest.mark.slow
def test_a_model_module_reruns_what_uses_it(smoke_run):
    module = smoke_run / "experiments" / "models" / "le_ace.py"
    with edited(module, 'REDUCTIONS = ("mean", "sum")', 'REDUCTIONS = ("mean", "sum")\n_EDITED = 1'):
        counts = dry_run(smoke_run)
    # le_ace features (Fig 4), le_ace_local features and Hessian shards (Fig 5), and both figures
    assert counts == Counter(compute_features=2, accumulate_hessian=2, merge_hessian=1, analyse_fig4=1,
                             plot_fig4=1, analyse_fig5=1, plot_fig5=1)


@pytest.mark.slow
def test_a_forced_rerun_gives_the_same_bytes_and_no_leftovers(smoke_run):
    """The analysis is deterministic, and writes through a temporary name (no hidden files left behind)."""
    table = smoke_run / "results" / "smoke" / "tables" / "fig6_body_order.csv"
    before = table.read_bytes()
    out = _snakemake("--cores", "1", "--config", "scale=smoke", "--forcerun", "analyse_fig6", "plot_fig6",
                     cwd=smoke_run)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert table.read_bytes() == before  # deterministic: the same bytes again
    assert not [p for p in table.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def dry_run_with(work, config: dict) -> Counter:
    path = work / "overrides.yaml"
    path.write_text(yaml.safe_dump(config))
    out = _snakemake("-n", "--configfile", str(path), "--config", "scale=smoke", cwd=work)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return job_counts(out.stdout)


@pytest.mark.slow
def test_overrides_in_the_workflow_config_rerun_what_reads_them(smoke_run):
    """config/workflow.yaml's overrides reach the stages' command lines, but only the digests decide reruns."""
    assert dry_run_with(smoke_run, {"model_overrides": {"ace": ["model.fit.ridge_alpha=2e-3"]}}) == Counter(
        fit_model=4, analyse_fig6=1, plot_fig6=1)  # ace's fits only (ace_purified is another config)
    assert dry_run_with(smoke_run, {"experiment_overrides": {
        "fig6_body_order": ["experiment.plot.cpr_statistic=mean"]}}) == Counter(plot_fig6=1)
    assert dry_run_with(smoke_run, {"dataset_overrides": {"si_nmers": ["dataset.training.sets_seed=7"]}}) == Counter(
        fit_model=8, analyse_fig6=1, plot_fig6=1)  # the training sets, not the dataset


@pytest.mark.slow
def test_a_users_data_file_is_an_input_of_its_dataset(smoke_run):
    """Runs last: it changes the copy's results (water monomers read from a file)."""
    from experiments.datasets.io import read_frames, write_frames

    mine = smoke_run / "my_monomers.extxyz"
    frames = read_frames(smoke_run / "results" / "smoke" / "data" / "water_monomers.extxyz")
    write_frames(frames, mine)
    config = {"dataset_overrides": {"water_monomers": [
        "dataset.source=file", f"dataset.file.path={mine}", "dataset.file.reference_method='GFN2-xTB (my file)'"]}}
    (smoke_run / "mine.yaml").write_text(yaml.safe_dump(config))
    run = _snakemake("--cores", "2", "--configfile", "mine.yaml", "--config", "scale=smoke", cwd=smoke_run)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert dry_run_with(smoke_run, config) == Counter()
    for a in frames:
        a.info["energy"] += 0.01
    write_frames(frames, mine)  # the user edits the file
    counts = dry_run_with(smoke_run, config)
    assert counts["prepare_dataset"] == 1 and counts["analyse_fig7"] == 1 and counts["compute_features"] == 2
