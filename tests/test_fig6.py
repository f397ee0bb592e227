"""Figure 6 stages (body order in linear ACE): smoke run, table consistency, and the paper's claims at quick scale."""

import numpy as np
import pandas as pd
import pytest

from conftest import compose
from experiments import fig6_body_order as fig6
from experiments.data import run as make_dataset
from experiments.datasets.io import write_frames


def run_stages(tmp_path, scale):
    data = tmp_path / "data" / "si_nmers.extxyz"
    write_frames(make_dataset(compose(["dataset=si_nmers", f"scale={scale}"])), data)
    manifest = tmp_path / "models" / "manifest.json"
    table = tmp_path / "tables" / "fig6_body_order.csv"
    pdf = tmp_path / "figures" / "fig6_body_order.pdf"
    base = ["experiment=fig6_body_order", f"scale={scale}"]
    fig6.train(compose(base + [f"inputs=[{data}]", f"output={manifest}"]))
    fig6.rigidity(compose(base + [f"inputs=[{manifest},{data}]", f"output={table}"]))
    fig6.figure(compose(base + [f"inputs=[{table}]", f"output={pdf}"]))
    return pd.read_csv(table), pdf


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_stages(tmp_path_factory.mktemp("fig6_smoke"), "smoke")


def test_smoke_table_is_complete_and_consistent(smoke):
    t, pdf = smoke
    assert pdf.is_file() and pdf.with_suffix(".png").is_file()
    assert set(t["scale"]) == {"smoke"}
    assert t["reference_method"].str.contains("Stillinger-Weber").all()
    cpr = t[t["quantity"] == "cpr_median"]
    assert len(cpr) == 2 * 4 * 4  # flavours x training sets x blocks
    assert (cpr["value"] > 0).all()
    for (flavour, k), g in t.groupby(["flavour", "training_set"]):
        curve = g[(g["quantity"] == "dimer_curve_component") & (g["block"] == "nu=1")]
        assert len(curve) == 9  # smoke dimer curve
        rmse = np.sqrt(np.mean((curve["value"] - curve["reference"]) ** 2))
        stated = g[g["quantity"] == "nu1_two_body_rmse"]["value"].item()
        assert stated == pytest.approx(rmse, rel=1e-6)
        # the components add up to the total prediction (no intercept by default)
        total = g[g["quantity"] == "dimer_curve_total"].set_index("x")["value"]
        parts = g[g["quantity"] == "dimer_curve_component"].groupby("x")["value"].sum()
        np.testing.assert_allclose(parts.loc[total.index], total, rtol=1e-8, atol=1e-10)


def test_training_sets_replace_pentamers_and_leave_the_test_set_alone():
    subset = np.array(["pentamer"] * 20 + ["dimer"] * 5 + ["trimer"] * 5 + ["dimer_curve"] * 3)
    sets, test = fig6.draw_training_sets(subset, [{"pentamer": 8}, {"pentamer": 6, "dimer": 2},
                                                  {"pentamer": 4, "dimer": 2, "trimer": 2}], seed=1)
    assert [len(s) for s in sets] == [8, 8, 8]
    assert set(sets[1]) - set(sets[0]) <= set(np.flatnonzero(subset == "dimer"))
    assert set(sets[2]) & set(np.flatnonzero(subset == "pentamer")) < set(sets[1])
    assert len(test) == 12 and not set(test) & set(np.concatenate(sets))
    assert (subset[test] == "pentamer").all()
    with pytest.raises(ValueError, match="needs 6 trimers, the dataset has 5"):
        fig6.draw_training_sets(subset, [{"pentamer": 2, "trimer": 6}], seed=1)
    with pytest.raises(ValueError, match="no pentamers left for the test set"):
        fig6.draw_training_sets(subset, [{"pentamer": 20}], seed=1)


def test_bad_experiment_settings_are_named():
    with pytest.raises(ValueError, match=r"flavours: 'pure' is not one of"):
        fig6.settings(compose(["experiment=fig6_body_order", "experiment.flavours=[pure]"]))
    with pytest.raises(ValueError, match=r"training_sets\[0\]: subsets \['hexamer'\]"):
        fig6.settings(compose(["experiment=fig6_body_order", "scale=paper", "experiment.training_sets=[{hexamer: 5}]"]))


@pytest.mark.slow
def test_quick_scale_reproduces_the_papers_findings(tmp_path):
    """Purified ACE learns the true two-body curve in nu = 1 and its CPR responds to dimers; self-interacting does not."""
    t, _ = run_stages(tmp_path, "quick")

    def value(quantity, flavour, k, block):
        row = t[(t["quantity"] == quantity) & (t["flavour"] == flavour) & (t["training_set"] == k) & (t["block"] == block)]
        return row["value"].item()

    for k in (1, 2, 3, 4):
        assert value("nu1_two_body_rmse", "purified", k, "nu=1") < 0.05  # eV, against Stillinger-Weber's pair term
        assert value("nu1_two_body_rmse", "self_interacting", k, "nu=1") > 0.5
    # adding 50 dimers: purified nu = 1 CPR up several-fold, self-interacting flat
    assert value("cpr_median", "purified", 2, "nu=1") > 3 * value("cpr_median", "purified", 1, "nu=1")
    si = [value("cpr_median", "self_interacting", k, "nu=1") for k in (1, 2, 3, 4)]
    assert max(si) / min(si) < 1.2
    # the reference's three-body energy is carried by the purified nu = 2 block
    assert value("pentamer_block_rmse", "purified", 4, "nu=2") < 0.1 < value("pentamer_block_rmse", "self_interacting", 4, "nu=2")
