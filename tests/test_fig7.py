"""Figure 7 stages (range separation in SOAP+LODE): a smoke run of train, rigidity and figure, and table checks."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import compose, run_smoke_experiment

pytest.importorskip("featomic")
pytest.importorskip("tblite")

from experiments import fig7_range_separation as fig7  # noqa: E402
from experiments.datasets.io import read_frames, write_frames  # noqa: E402

BASE = ["experiment=fig7_range_separation", "scale=smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig7_smoke")
    run = run_smoke_experiment(root, fig7, "fig7_range_separation", ["water_dimers", "water_monomers"])
    data, inputs, manifest, table, pdf = run["data"], run["inputs"], run["manifest"], run["table"], run["pdf"]
    return dict(root=root, data=data, inputs=inputs, manifest=manifest, table=pd.read_csv(table), pdf=pdf)


def test_smoke_run_writes_the_manifest_table_and_figure(smoke):
    assert smoke["pdf"].is_file() and smoke["pdf"].with_suffix(".png").is_file()
    meta = json.loads(smoke["manifest"].read_text())
    assert set(meta["files"]) == {"features", "models"}
    assert meta["blocks"] == {"SR": [0, 384], "LR": [384, 896]}
    assert meta["train_sizes"] == [5, 10] and meta["scale"] == "smoke"
    features = np.load(smoke["manifest"].parent / meta["files"]["features"])
    assert features["X_dimers__range_separated"].shape == (10, 896)
    assert features["X_monomers__non_orthogonal"].shape == (6, 896)
    assert np.all(np.diff(features["o_o_distance"]) >= 0)


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


def test_rigidity_refuses_data_the_features_were_not_computed_from(smoke, tmp_path):
    monomers = read_frames(smoke["data"]["water_monomers"])
    for a in monomers:
        a.info["energy"] += 0.1
    other = tmp_path / "water_monomers.extxyz"
    write_frames(monomers, other)
    cfg = compose(BASE + [f"inputs=[{smoke['manifest']},{smoke['data']['water_dimers']},{other}]",
                          f"output={tmp_path / 'table.csv'}"])
    with pytest.raises(ValueError, match="rerun the training stage"):
        fig7.rigidity(cfg)


def test_training_sizes_beyond_the_dataset_are_an_error(smoke, tmp_path):
    cfg = compose(BASE + ["experiment.sizes.smoke.train_sizes=[5,20]", f"inputs=[{smoke['inputs']}]",
                          f"output={tmp_path / 'manifest.json'}"])
    with pytest.raises(ValueError, match="exceed the 10 dimers"):
        fig7.train(cfg)


def test_settings_check_variants_and_statistic():
    with pytest.raises(ValueError, match="variants"):
        fig7.settings(compose(BASE + ["experiment.variants=[orthogonal]"]))
    with pytest.raises(ValueError, match="cpr_statistic"):
        fig7.settings(compose(BASE + ["experiment.cpr_statistic=max"]))
    s = fig7.settings(compose(BASE))
    assert s["experiment"]["train_sizes"] == [5, 10]
    assert s["model"]["lode"]["real_space_spline_accuracy"] == 1e-4 and s["model"]["lode"]["exponent"] == 3
