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
    # CPR ratios: each set's statistic over set 1's (pentamers only), per flavour and block
    for statistic in ("mean", "median"):
        c = t[t["quantity"] == f"cpr_{statistic}"].set_index(["flavour", "block", "training_set"])["value"]
        r = t[t["quantity"] == f"cpr_ratio_{statistic}"]
        assert len(r) == 2 * 3 * 4 and set(r["training_set"]) == {2, 3, 4}
        for _, row in r.iterrows():
            expected = c[(row["flavour"], row["block"], row["training_set"])] / c[(row["flavour"], row["block"], 1)]
            assert row["value"] == pytest.approx(expected, rel=1e-8)
    # the paper's clusters: every purified block is non-zero on every test pentamer, and the geometry rows
    # measure nearest neighbours at 2.0-2.5 A and the pentamer size cap 4.121 (5 / 2)^(1/3) A
    assert (t[t["quantity"] == "cpr_zero_block_count"]["value"] == 0).all()
    geometry = t[t["quantity"].str.startswith("test_pentamer_")].set_index("quantity")["value"]
    assert 2.0 <= geometry["test_pentamer_nn_distance_min"] <= geometry["test_pentamer_nn_distance_max"] <= 2.5
    assert geometry["test_pentamer_diameter_max"] < 4.121 * 2.5 ** (1 / 3)
    assert set(t["cpr_pentamers"]) == {fig6.CPR_PENTAMERS}
    for _, g in t[t["flavour"].isin(fig6.FLAVOURS)].groupby(["flavour", "training_set"]):
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


def test_cpr_ratios_divide_by_the_first_set_and_leave_infinite_cprs_undefined():
    rows = [dict(flavour=f, training_set=k, quantity="cpr_mean", block="nu=1", value=v)
            for f, values in (("purified", (2.0, 8.0, 3.0)), ("self_interacting", (np.inf, 1.0, np.inf)))
            for k, v in zip((1, 2, 3), values)]
    ratios = {(r["flavour"], r["training_set"]): r["value"] for r in fig6.cpr_ratios(rows)}
    assert ratios[("purified", 2)] == 4.0 and ratios[("purified", 3)] == 1.5
    assert np.isnan(ratios[("self_interacting", 2)]) and np.isnan(ratios[("self_interacting", 3)])
    assert len(ratios) == 4


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

    for k in (2, 3, 4):  # the models that have seen dimers
        assert value("nu1_two_body_rmse", "purified", k, "nu=1") < 0.05  # eV, against Stillinger-Weber's pair term
    assert value("nu1_two_body_rmse", "purified", 1, "nu=1") > value("nu1_two_body_rmse", "purified", 2, "nu=1")
    for k in (1, 2, 3, 4):
        assert value("nu1_two_body_rmse", "self_interacting", k, "nu=1") > 0.5
    # the paper's clusters leave no test pentamer with an all-zero purified nu = 4 block
    assert value("cpr_zero_block_count", "purified", 1, "nu=4") == 0
    # adding 50 dimers: purified nu = 1 CPR up several-fold, self-interacting flat
    assert value("cpr_ratio_median", "purified", 2, "nu=1") > 3
    si = [value("cpr_median", "self_interacting", k, "nu=1") for k in (1, 2, 3, 4)]
    assert max(si) / min(si) < 1.2
    # trimers raise purified nu = 2, tetramers nu = 4 (paper: "a notable increase"); self-interacting stays
    # below purified in every block
    for statistic in ("mean", "median"):
        ratio = f"cpr_ratio_{statistic}"
        assert value(ratio, "purified", 3, "nu=2") > 1.5 * value(ratio, "purified", 2, "nu=2")
        assert value(ratio, "purified", 4, "nu=4") > 1.5 * value(ratio, "purified", 3, "nu=4")
        for k in (1, 2, 3, 4):
            for block in ("nu=1", "nu=2", "nu=3", "nu=4"):
                assert (value(f"cpr_{statistic}", "self_interacting", k, block)
                        < value(f"cpr_{statistic}", "purified", k, block))
    # the reference's three-body energy is carried by the purified nu = 2 block
    assert (value("pentamer_block_rmse", "purified", 4, "nu=2") < 0.1
            < value("pentamer_block_rmse", "self_interacting", 4, "nu=2"))
