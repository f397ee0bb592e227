"""The PaiNN training stage (rule train_model): schnetpack's AtomisticTask and lightning's Trainer on the run's QM9
molecules, the best validation model beside its manifest, read back by the last-layer library."""

import json

import numpy as np
import pytest

pytest.importorskip("schnetpack")
pytest.importorskip("pytorch_lightning")

from conftest import Runner  # noqa: E402

from rigidity.last_layer import PaiNNLastLayer  # noqa: E402

pytestmark = pytest.mark.slow

# a tiny architecture (the paper's 128 features and 3 interactions are minutes per epoch on a CPU core), enough
# epochs and a large enough learning rate for the validation loss to move
TINY = ("model.n_atom_basis=8", "model.n_interactions=1", "model.last_layer_features=4", "model.max_epochs=6",
        "model.optimizer.batch_size=4", "model.optimizer.lr=5e-3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from experiments.datasets.io import read_frames
    from experiments.layout import data_key

    root = tmp_path_factory.mktemp("train_painn")
    runner = Runner(root)
    data = runner.build(data_key("qm9"))

    def train(name, *overrides):
        from experiments import train

        manifest = root / "models" / "painn" / "qm9" / name / "manifest.json"
        train.write(runner.cfg("model=painn", "dataset=qm9", "run=n8-seed4", f"output={manifest}", *TINY, *overrides,
                               inputs={data_key("qm9"): str(data)}))
        return manifest

    return train, train("n8-seed4"), read_frames(data, energy_key="energy", forces_key=None)


def test_the_manifest_names_the_run_and_the_model_reads_back(trained):
    from experiments._results import frames_fingerprint
    from experiments.datasets.qm9 import REFERENCE_METHOD
    from experiments.models.painn import load

    _, manifest, frames = trained
    meta = json.loads(manifest.read_text())
    pool = [a for a in frames if a.info["subset"] == "train"]
    valid = [a for a in frames if a.info["subset"] == "validation"]
    assert meta["n_train"] == 8 and meta["package"] == "schnetpack" and meta["file"] == "model.pt"
    assert meta["fingerprint"] == frames_fingerprint(pool[:8])  # run n8: the first 8 of the pool, in file order
    assert meta["n_valid"] == len(valid) > 0
    assert meta["reference_method"] == REFERENCE_METHOD and meta["seed"] == 4 and meta["device"] == "cpu"
    # QM9 has no forces: energies alone, schnetpack's MSE averaged over the batch
    assert meta["loss"] == {"kind": "energy", "per_atom_energy": False, "reduction": "mean",
                            "energy_weight": 1.0, "forces_weight": 0.0}
    assert meta["epochs"] == len(meta["val_loss"]) == 6

    model = load(manifest.parent / "model.pt")
    ll = PaiNNLastLayer(model)
    assert ll.n_features == meta["last_layer_features"] == 4 and ll.aggregation == "sum"
    test = [a for a in frames if a.info["subset"] == "test"][:5]
    rebuilt, own = ll.energies(test)
    np.testing.assert_allclose(rebuilt, own, rtol=1e-10)
    # reloading gives the same predictions
    np.testing.assert_allclose(PaiNNLastLayer(load(manifest.parent / "model.pt")).energies(test)[1], own, rtol=0)
    # nothing left of the training run but the model and its manifest
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json", "model.pt"]


def test_the_offsets_are_qm9s_atom_energies_and_the_training_mean(trained):
    import schnetpack as spk

    from experiments.datasets.qm9 import ATOM_U0_HARTREE, HARTREE_TO_EV
    from experiments.models.painn import load

    _, manifest, frames = trained
    meta = json.loads(manifest.read_text())
    (offsets,) = [p for p in load(manifest.parent / "model.pt").postprocessors
                  if isinstance(p, spk.transform.AddOffsets)]
    assert offsets.add_mean and offsets.add_atomrefs and offsets.is_extensive
    ref = {s: e * HARTREE_TO_EV for s, e in ATOM_U0_HARTREE.items()}
    assert meta["offsets"]["atomrefs"] == pytest.approx(ref, rel=1e-15)
    table = offsets.atomref.numpy()
    expected = np.zeros(100)
    expected[[1, 6, 7, 8, 9]] = [ref[s] for s in ("H", "C", "N", "O", "F")]
    np.testing.assert_array_equal(table, expected)  # float64, not schnetpack's float32 metadata
    # the mean per atom of what the atom references leave, over the 8 training molecules only
    train = [a for a in frames if a.info["subset"] == "train"][:8]
    mean = np.mean([(a.info["energy"] - sum(ref[s] for s in a.get_chemical_symbols())) / len(a) for a in train])
    assert float(offsets.mean) == pytest.approx(mean, rel=1e-12) == meta["offsets"]["mean_per_atom"]


def test_the_kept_model_is_the_best_on_the_validation_set_and_it_learned(trained):
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from experiments.models.painn import _network, load

    _, manifest, frames = trained
    meta = json.loads(manifest.read_text())
    valid = [a for a in frames if a.info["subset"] == "validation"]
    energies = np.array([a.info["energy"] for a in valid])
    model = load(manifest.parent / "model.pt")
    mse = np.mean((PaiNNLastLayer(model).energies(valid)[1] - energies) ** 2)
    # the validation set is the dataset's, and the kept model the epoch with the lowest validation loss (float32)
    assert mse == pytest.approx(min(meta["val_loss"]), rel=1e-4)
    # the same seed draws the same initial network: the trained one moved away from it and predicts better
    pl.seed_everything(4, verbose=False)
    initial = _network(OmegaConf.create(meta["model_config"]), False, 0.0, np.zeros(100)).double()
    initial.postprocessors.load_state_dict(model.postprocessors.state_dict())  # the same offsets
    start = dict(initial.named_parameters())
    assert set(start) == {name for name, _ in model.named_parameters()}
    moved = [name for name, p in model.named_parameters() if not torch.equal(p, start[name])]
    assert len(moved) == len(start)
    assert mse < np.mean((PaiNNLastLayer(initial.eval()).energies(valid)[1] - energies) ** 2)


def test_the_same_seed_trains_the_same_weights(trained):
    import torch

    from experiments.models.painn import load

    train, manifest, _ = trained
    again = train("again")
    first, second = load(manifest.parent / "model.pt"), load(again.parent / "model.pt")
    for (name, p), (_, q) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert json.loads(again.read_text())["val_loss"] == json.loads(manifest.read_text())["val_loss"]
