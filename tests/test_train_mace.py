"""The MACE training stage (rule train_model): mace-torch's own mace_run_train on the run's Si clusters, the model
beside its manifest, read back by the last-layer library."""

import json

import numpy as np
import pytest

pytest.importorskip("mace")
pytest.importorskip("tblite")

from conftest import Runner  # noqa: E402

from rigidity.last_layer import MACELastLayer  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from experiments import train
    from experiments.datasets.io import read_frames
    from experiments.layout import data_key

    root = tmp_path_factory.mktemp("train_mace")
    runner = Runner(root)
    data = runner.build(data_key("si_clusters"))
    manifest = root / "models" / "mace" / "si_clusters" / "n8" / "manifest.json"
    # a small architecture at smoke scale (the paper's 128x0e+128x1o takes minutes per epoch on a CPU core)
    cfg = runner.cfg("model=mace", "dataset=si_clusters", "run=n8", f"output={manifest}", "model.hidden_irreps=8x0e",
                     "model.last_layer_features=24", "model.correlation=2", "model.max_ell=1",
                     inputs={data_key("si_clusters"): str(data)})
    train.write(cfg)
    return manifest, read_frames(data, energy_key="energy", forces_key="forces")


def test_the_manifest_names_the_run_and_the_model_reads_back(trained):
    from experiments._results import frames_fingerprint

    manifest, frames = trained
    meta = json.loads(manifest.read_text())
    pool = [a for a in frames if a.info["subset"] == "train"]
    assert meta["n_train"] == 8 and meta["package"] == "mace-torch" and meta["file"] == "model.model"
    assert meta["fingerprint"] == frames_fingerprint(pool[:8])  # run n8: the first 8 of the pool, in file order
    assert [frames[i] for i in meta["rows"]] == pool[:8]
    assert meta["n_valid"] == sum(a.info["subset"] == "validation" for a in frames) > 0
    assert "GFN2-xTB" in meta["reference_method"]
    assert meta["loss"] == {"kind": "energy_forces", "per_atom_energy": True, "reduction": "mean",
                            "energy_weight": 1.0, "forces_weight": 100.0}
    from experiments.models.mace import load

    model = load(manifest.parent / "model.model")
    ll = MACELastLayer(model)
    assert ll.n_features == meta["last_layer_features"] == 8 + 16
    # E0 is the dataset's isolated-atom energy (GFN2-xTB), as the config asks
    e0 = float(ll.constants([frames[0]])[0]) - ll.shift
    assert e0 == pytest.approx(frames[0].info["isolated_atom_energy"], rel=1e-12)
    test = [a for a in frames if a.info["subset"] == "test"][:4]
    rebuilt, own = ll.energies(test)
    np.testing.assert_allclose(rebuilt, own, rtol=1e-12)
    # reloading gives the same predictions
    np.testing.assert_allclose(MACELastLayer(load(manifest.parent / "model.model")).energies(test)[1], own, rtol=0)
    # nothing left of the training run but the model and its manifest
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json", "model.model"]


def test_the_manifest_gives_the_adapter_and_the_papers_covariance(trained):
    from conftest import compose

    from experiments.models._network import last_layer, paper_llpr

    manifest, frames = trained
    ll = last_layer(manifest)
    assert isinstance(ll, MACELastLayer)
    train = [a for a in frames if a.info["subset"] == "train"][:8]
    cfg = compose(["model=mace", "scale=smoke"])
    llpr = paper_llpr(ll, cfg.model).fit(train)
    # the paper's covariance: atom-averaged features of the training clusters, no force rows, plus sigma^2 I
    phi, structure = ll.features(train)
    G = np.stack([phi[structure == s].mean(0) for s in range(len(train))])
    H = G.T @ G + cfg.model.rigidity.regularizer * np.eye(ll.n_features)
    np.testing.assert_allclose(llpr.hessian.matrix, H, rtol=1e-12, atol=1e-14 * np.abs(H).max())
