"""Figure 6 stages (body order in linear ACE): smoke run, table consistency, the run keys' training sets, and the
paper's claims at quick scale."""

import numpy as np
import pandas as pd
import pytest
from conftest import Runner, compose

from experiments import fig6_body_order as fig6
from experiments._results import load_model
from experiments.datasets.io import read_frames
from experiments.runs import select

NAME = "fig6_body_order"


def run_stages(tmp_path, scale):
    runner = Runner(tmp_path, scale)
    run = runner.experiment(NAME)
    return pd.read_csv(run["outputs"]["table"]), run["pdf"], run["inputs"], runner


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_stages(tmp_path_factory.mktemp("fig6_smoke"), "smoke")


def test_smoke_table_is_complete_and_consistent(smoke):
    t, pdf, _, _ = smoke
    assert pdf.is_file() and pdf.with_suffix(".png").is_file()
    assert set(t["scale"]) == {"smoke"}
    assert t["reference_method"].str.contains("Stillinger-Weber").all()
    cpr = t[t["quantity"] == "cpr_median"]
    assert len(cpr) == 2 * 4 * 4  # flavours x training sets x blocks
    assert (cpr["value"] > 0).all()
    for _, g in t.groupby(["flavour", "training_set"]):
        curve = g[(g["quantity"] == "dimer_curve_component") & (g["block"] == "nu=1")]
        assert len(curve) == 9  # smoke dimer curve
        rmse = np.sqrt(np.mean((curve["value"] - curve["reference"]) ** 2))
        stated = g[g["quantity"] == "nu1_two_body_rmse"]["value"].item()
        assert stated == pytest.approx(rmse, rel=1e-6)
        # the components add up to the total prediction (no intercept by default)
        total = g[g["quantity"] == "dimer_curve_total"].set_index("x")["value"]
        parts = g[g["quantity"] == "dimer_curve_component"].groupby("x")["value"].sum()
        np.testing.assert_allclose(parts.loc[total.index], total, rtol=1e-8, atol=1e-10)


def test_named_training_sets_replace_pentamers_and_leave_the_test_set_alone():
    from types import SimpleNamespace

    from ase import Atoms

    labels = ["pentamer"] * 20 + ["dimer"] * 5 + ["trimer"] * 5 + ["dimer_curve"] * 3
    frames = [Atoms("Si", info={"subset": s}) for s in labels]
    subset = np.array(labels)
    training = SimpleNamespace(pool=None, pool_key="subset", sets_key="subset",
                               sets_order=["dimer", "trimer", "tetramer", "pentamer"], sets_seed=1,
                               sets={"a": {"pentamer": 8}, "b": {"pentamer": 6, "dimer": 2},
                                     "c": {"pentamer": 4, "dimer": 2, "trimer": 2}, "big": {"trimer": 6}})
    sets = [select(frames, training, k) for k in ("a", "b", "c")]
    assert [len(s) for s in sets] == [8, 8, 8]
    assert set(sets[1]) - set(sets[0]) <= set(np.flatnonzero(subset == "dimer"))
    assert set(sets[2]) & set(np.flatnonzero(subset == "pentamer")) < set(sets[1])
    runs = [{"rows": r} for r in sets]
    test = fig6.test_pentamers(subset, [{"runs": runs}])
    assert len(test) == 12 and not set(test) & set(np.concatenate(sets))
    assert (subset[test] == "pentamer").all()
    with pytest.raises(ValueError, match="needs 6 trimers, dataset has 5"):
        select(frames, training, "big")
    with pytest.raises(ValueError, match="no pentamers left for the test set"):
        fig6.test_pentamers(subset, [{"runs": [{"rows": np.flatnonzero(subset == "pentamer")}]}])


def test_fits_are_the_ridge_of_their_runs_training_sets(smoke):
    """Every fit_model output: its rows are the run's named set, its weights the normal-equation ridge on them."""
    from experiments._results import load_features

    _, _, inputs, runner = smoke
    frames = read_frames(inputs["data/si_nmers"])
    training = runner.plan.dataset("si_nmers").training
    y = np.array([a.info["energy"] / len(a) for a in frames])
    for model in ("ace", "ace_purified"):
        fs = load_features(inputs[f"features/{model}/si_nmers/structures"])
        X = fs.X / fs.n_atoms[:, None]
        alpha = runner.plan.model(model).fit.ridge_alpha
        for run in ("set1", "set2", "set3", "set4"):
            m = load_model(inputs[f"models/{model}/si_nmers/{run}"])
            rows = m.arrays["rows"]
            np.testing.assert_array_equal(rows, select(frames, training, run))
            A = X[rows]
            w = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ y[rows])
            np.testing.assert_allclose(m.arrays["w"], w, rtol=1e-6, atol=1e-9 * np.abs(w).max())
            assert float(m.arrays["b"]) == 0.0 and m.meta["run"] == run and m.meta["n_train"] == len(rows)


def test_bad_experiment_settings_are_named():
    with pytest.raises(ValueError, match=r"cpr_statistic must be one of \['mean', 'median'\], got 'max'"):
        fig6.check(compose([f"experiment={NAME}", "experiment.plot.cpr_statistic=max"]))
    from experiments.workflow import Plan

    with pytest.raises(ValueError, match="no such training set 'set9'"):  # at `snakemake -n`, not in a job
        Plan({"scale": "smoke", "results": "/nonexistent", "experiment_overrides": {
            NAME: ["experiment.models=[{model: ace, dataset: si_nmers, runs: [set9]}]"]}}, cache_dir=None)


@pytest.mark.slow
def test_quick_scale_reproduces_the_papers_findings(tmp_path):
    """Purified ACE learns the true two-body curve in nu = 1 and its CPR responds to dimers;
    self-interacting does not."""
    t, _, _, _ = run_stages(tmp_path, "quick")

    def value(quantity, flavour, k, block):
        row = t[(t["quantity"] == quantity) & (t["flavour"] == flavour) & (t["training_set"] == k)
                & (t["block"] == block)]
        return row["value"].item()

    for k in (1, 2, 3, 4):
        assert value("nu1_two_body_rmse", "purified", k, "nu=1") < 0.05  # eV, against Stillinger-Weber's pair term
        assert value("nu1_two_body_rmse", "self_interacting", k, "nu=1") > 0.5
    # adding 50 dimers: purified nu = 1 CPR up several-fold, self-interacting flat
    assert value("cpr_median", "purified", 2, "nu=1") > 3 * value("cpr_median", "purified", 1, "nu=1")
    si = [value("cpr_median", "self_interacting", k, "nu=1") for k in (1, 2, 3, 4)]
    assert max(si) / min(si) < 1.2
    # the reference's three-body energy is carried by the purified nu = 2 block
    assert (value("pentamer_block_rmse", "purified", 4, "nu=2") < 0.1
            < value("pentamer_block_rmse", "self_interacting", 4, "nu=2"))
