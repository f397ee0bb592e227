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
    assert set(energies["unit"]) == {"eV/atom"}
    monomers = read_frames(smoke["inputs"]["data/water_monomers"])
    per_atom = np.array([a.info["energy"] / len(a) for a in monomers])
    for v in variants:
        for n in sizes:
            e = energies[(energies["variant"] == v) & (energies["n_train"] == n)].sort_values("structure")
            # the paper's zero: the reference monomer mean per atom; predictions not re-centred
            np.testing.assert_allclose(e["reference"], per_atom - per_atom.mean(), rtol=0, atol=1e-10)
            err = 1000 * (e["value"].to_numpy() - e["reference"].to_numpy())
            centred = err - err.mean()
            stated = t[(t["variant"] == v) & (t["n_train"] == n)].set_index("quantity")
            for quantity, values, unit in [("monomer_rmse", err, "meV/atom"),
                                           ("monomer_rmse_centred", centred, "meV/atom"),
                                           ("monomer_rmse_molecule", 3 * err, "meV"),
                                           ("monomer_rmse_molecule_centred", 3 * centred, "meV")]:
                assert stated.loc[quantity, "unit"] == unit
                assert stated.loc[quantity, "value"] == pytest.approx(np.sqrt(np.mean(values ** 2)), rel=1e-6)
            assert stated.loc["monomer_mean_error", "value"] == pytest.approx(err.mean(), rel=1e-6, abs=1e-6)
            assert stated.loc["train_rmse", "value"] < 0.2  # meV/atom: 896 weights interpolate at most 10 dimers
    assert set(t["lr_block"]) == {"lode_lode"} and set(t["reduce"]) == {"mean"}
    # range separation: with the closest dimers only, the LR block is more rigid than SR
    rs = cpr[(cpr["variant"] == "range_separated") & (cpr["statistic"] == "mean") & (cpr["n_train"] == 5)]
    assert rs.set_index("block").loc["LR", "value"] > rs.set_index("block").loc["SR", "value"]


def test_atom_mean_fit_is_the_summed_fit_with_n_squared_alpha():
    """fit.reduce: mean on N-atom structures == sum with alpha N^2 (closed form), and the baseline is the mean."""
    from ase import Atoms

    from experiments._results import FeatureSet
    from experiments.models import soap_lode

    rng = np.random.default_rng(7)
    frames = [Atoms("OH2OH2", positions=rng.normal(size=(6, 3))) for _ in range(8)]
    for a in frames:
        a.info["energy"] = float(rng.normal())
    X = rng.normal(size=(8, 30))
    feats = FeatureSet(X, np.full(8, 6), {"SR": (0, 10), "LR": (10, 30)}, {"species": [1, 8]})
    rows = np.arange(6)
    model = compose(["model=soap_lode", "scale=smoke", "model.fit.ridge_alpha=1e-2"]).model
    mean = soap_lode.fit(model, frames, feats, rows)
    total = soap_lode.fit(compose(["model=soap_lode", "scale=smoke", "model.fit.ridge_alpha=0.36",
                                   "model.fit.reduce=sum"]).model, frames, feats, rows)
    np.testing.assert_allclose(mean.arrays["w"], total.arrays["w"], rtol=1e-9, atol=1e-12)
    E = np.array([a.info["energy"] for a in frames])[rows] / 6
    y = E - E.mean()
    w = np.linalg.solve((X[rows] / 6).T @ (X[rows] / 6) + 1e-2 * np.eye(30), (X[rows] / 6).T @ y)
    np.testing.assert_allclose(mean.arrays["w"], w, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.array([4, 2]) / 6 @ mean.arrays["e"], E.mean(), rtol=1e-12)
    assert mean.meta["reduce"] == "mean" and total.meta["reduce"] == "sum"


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
