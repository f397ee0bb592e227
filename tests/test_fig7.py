"""Figure 7 stages (range separation in SOAP+LODE): a smoke run of features, fits, analysis and figure,
and table checks."""

import numpy as np
import pandas as pd
import pytest
from conftest import Runner, compose

pytest.importorskip("featomic")
pytest.importorskip("tblite")

from experiments import fig7_range_separation as fig7  # noqa: E402
from experiments import train  # noqa: E402
from experiments._results import load_features  # noqa: E402
from experiments.datasets.io import read_frames, write_frames  # noqa: E402

NAME = "fig7_range_separation"
BASE = [f"experiment={NAME}", "scale=smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig7_smoke")
    runner = Runner(root)
    run = runner.experiment(NAME)
    return dict(root=root, runner=runner, inputs=run["inputs"], table=pd.read_csv(run["outputs"]["table"]),
                pdf=run["pdf"])


def test_smoke_run_writes_features_fits_table_and_figure(smoke):
    assert smoke["pdf"].is_file() and smoke["pdf"].with_suffix(".png").is_file()
    for model, variant in (("soap_lode", "non_orthogonal"), ("soap_lode_rs", "range_separated")):
        fd = load_features(smoke["inputs"][f"features/{model}/water_dimers/structures"])
        fm = load_features(smoke["inputs"][f"features/{model}/water_monomers/structures"])
        assert fd.blocks == {"SR": (0, 384), "LR": (384, 896)} and fd.meta["variant"] == variant
        assert fd.X.shape == (10, 896) and fm.X.shape == (6, 896) and fd.meta["scale"] == "smoke"
    dimers = read_frames(smoke["inputs"]["data/water_dimers"])
    assert np.all(np.diff([a.info["o_o_distance"] for a in dimers]) >= 0)
    assert {k.split("/")[-1] for k in smoke["inputs"] if k.startswith("models/")} == {"n5", "n10"}


def test_table_rows_are_complete_finite_and_consistent(smoke):
    t = smoke["table"]
    assert set(t["scale"]) == {"smoke"}
    assert set(t["reference_method"]) == {"GFN2-xTB"}
    assert np.isfinite(t["value"]).all()
    variants, sizes = ["non_orthogonal", "range_separated"], [5, 10]
    cpr = t[t["quantity"] == "cpr"]
    per = cpr[cpr["statistic"] == "per_structure"]
    assert len(per) == 2 * 2 * 2 * 10  # variants x sizes x blocks x dimers
    assert (cpr["value"] > 0).all()
    for (v, n, block), g in per.groupby(["variant", "n_train", "block"]):
        stats = cpr[(cpr["variant"] == v) & (cpr["n_train"] == n) & (cpr["block"] == block)].set_index("statistic")
        assert stats.loc["mean", "value"] == pytest.approx(g["value"].mean(), rel=1e-8)
        assert stats.loc["median", "value"] == pytest.approx(g["value"].median(), rel=1e-8)
        assert stats.loc["geometric_mean", "value"] == pytest.approx(np.exp(np.log(g["value"]).mean()), rel=1e-8)
    energies = t[t["quantity"] == "monomer_energy"]
    assert len(energies) == 2 * 2 * 6
    for v in variants:
        for n in sizes:
            e = energies[(energies["variant"] == v) & (energies["n_train"] == n)]
            assert abs(e["value"].mean()) < 1e-9 and abs(e["reference"].mean()) < 1e-9  # zero at the monomer mean
            rmse = 1000 * np.sqrt(np.mean((e["value"] - e["reference"]) ** 2))
            stated = t[(t["quantity"] == "monomer_rmse") & (t["variant"] == v) & (t["n_train"] == n)]
            assert stated["unit"].item() == "meV"
            assert stated["value"].item() == pytest.approx(rmse, rel=1e-8)
            train = t[(t["quantity"] == "train_rmse") & (t["variant"] == v) & (t["n_train"] == n)]["value"].item()
            assert train < 1.0  # meV: 896 weights interpolate at most 10 dimers
    # range separation: with the closest dimers only, the LR block is more rigid than SR
    rs = cpr[(cpr["variant"] == "range_separated") & (cpr["statistic"] == "mean") & (cpr["n_train"] == 5)]
    assert rs.set_index("block").loc["LR", "value"] > rs.set_index("block").loc["SR", "value"]


def test_analysis_refuses_data_the_features_were_not_computed_from(smoke, tmp_path):
    monomers = read_frames(smoke["inputs"]["data/water_monomers"])
    for a in monomers:
        a.info["energy"] += 0.1
    other = tmp_path / "water_monomers.extxyz"
    write_frames(monomers, other)
    cfg = smoke["runner"].cfg(f"experiment={NAME}", inputs=dict(smoke["inputs"], **{"data/water_monomers": str(other)}))
    with pytest.raises(ValueError, match="rerun compute_features"):
        fig7.analyse(cfg)


def test_training_sizes_beyond_the_dataset_are_an_error(smoke):
    inputs = {k: v for k, v in smoke["inputs"].items() if k in ("data/water_dimers",
                                                                "features/soap_lode/water_dimers/structures")}
    cfg = smoke["runner"].cfg("model=soap_lode", "dataset=water_dimers", "run=n20", inputs=inputs)
    with pytest.raises(ValueError, match="run n20: 20 structures asked for, the training pool of water_dimers has 10"):
        train.run(cfg)


def test_settings_check_the_statistic_and_the_datasets():
    with pytest.raises(ValueError, match="cpr_statistic"):
        fig7.check(compose(BASE + ["experiment.plot.cpr_statistic=max"]))
    with pytest.raises(ValueError, match="monomers"):
        fig7.check(compose(BASE + ["experiment.monomers=water_dimers"]))
    cfg = compose(BASE)
    fig7.check(cfg)
    assert [list(m.runs) for m in cfg.experiment.models] == [["n5", "n10"], ["n5", "n10"]]
    model = compose(["model=soap_lode_rs", "scale=smoke"]).model
    assert model.descriptor.lode.real_space_spline_accuracy == 1e-4 and model.descriptor.lode.exponent == 3
    assert model.descriptor.variant == "range_separated"
