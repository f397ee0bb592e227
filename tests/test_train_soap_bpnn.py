"""The SOAP-BPNN training stage (rule train_model): metatrain's own train_model on the run's QM9 molecules, the model
and its checkpoints beside the manifest, read back by the last-layer library."""

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("metatrain.soap_bpnn")
pytest.importorskip("vesin.metatomic")

from conftest import Runner  # noqa: E402

from rigidity.last_layer import MetatomicLastLayer  # noqa: E402

pytestmark = pytest.mark.slow
EPOCHS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from experiments import train
    from experiments.datasets.io import read_frames
    from experiments.layout import data_key

    root = tmp_path_factory.mktemp("train_soap_bpnn")
    runner = Runner(root)
    data = runner.build(data_key("qm9"))
    manifest = root / "models" / "soap_bpnn" / "qm9" / "n8-seed3" / "manifest.json"
    # a tiny SOAP and network at smoke scale (the paper's n_max = l_max = 9, 2 x 64 take minutes per epoch on a core)
    cfg = runner.cfg("model=soap_bpnn", "dataset=qm9", "run=n8-seed3", f"output={manifest}", "model.soap.max_radial=2",
                     "model.soap.max_angular=2", "model.hidden_layers=[6,6]", f"model.max_epochs={EPOCHS}",
                     "model.checkpoint_epochs=[0,1,2]", "model.checkpoint_runs=[n8-seed3]",
                     "model.optimizer.batch_size=4", inputs={data_key("qm9"): str(data)})
    np.random.seed(11)
    random.seed(11)
    torch.manual_seed(11)
    start = time.perf_counter()
    train.write(cfg)
    seconds = time.perf_counter() - start
    states = (np.random.rand(), random.random(), float(torch.rand(1)))
    np.random.seed(11)
    random.seed(11)
    torch.manual_seed(11)
    untouched = (np.random.rand(), random.random(), float(torch.rand(1)))
    return manifest, read_frames(data, energy_key="energy", forces_key=None), seconds, states == untouched


@pytest.fixture(autouse=True, scope="module")
def plain_torchscript():
    """TorchScript's profiling executor spends seconds optimising the first calls of an exported model; off here."""
    with torch.jit.optimized_execution(False):
        yield


def test_the_manifest_names_the_run_and_the_model_reads_back(trained):
    from experiments._results import frames_fingerprint
    from experiments.models.soap_bpnn import load

    manifest, frames, seconds, rng_kept = trained
    assert seconds < 30, f"training the tiny SOAP-BPNN took {seconds:.0f} s"
    assert rng_kept and torch.get_default_dtype() == torch.float32  # metatrain's seeds and precision did not leak
    meta = json.loads(manifest.read_text())
    pool = [a for a in frames if a.info["subset"] == "train"]
    valid = [a for a in frames if a.info["subset"] == "validation"]
    assert meta["package"] == "metatrain" and meta["file"] == "model.pt" and meta["checkpoint"] == "model.ckpt"
    assert meta["n_train"] == 8 and meta["fingerprint"] == frames_fingerprint(pool[:8])  # the pool's first 8
    assert meta["n_valid"] == len(valid) > 0 and meta["seed"] == 3
    assert meta["reference_method"] == "B3LYP/6-31G(2df,p) (QM9)"
    assert meta["loss"] == {"kind": "energy", "per_atom_energy": True, "reduction": "mean", "energy_weight": 1.0,
                            "forces_weight": 0.0}
    # what metatrain ran: the config's SOAP, network, optimiser, seed and precision, validation file, no test set
    options = meta["metatrain_options"]
    arch = options["architecture"]
    assert arch["model"]["soap"] == {"max_radial": 2, "max_angular": 2, "cutoff": {"radius": 5.0, "width": 0.5}}
    assert arch["model"]["legacy"] and arch["model"]["bpnn"]["num_hidden_layers"] == 2
    assert arch["model"]["bpnn"]["num_neurons_per_layer"] == 6
    assert arch["training"]["num_epochs"] == EPOCHS and arch["training"]["learning_rate"] == 1e-3
    assert arch["training"]["batch_size"] == 4 and arch["training"]["per_structure_targets"] == []
    assert options["seed"] == 3 and options["base_precision"] == 64 and options["test_set"] == 0.0
    assert options["validation_set"][0]["systems"]["read_from"] == "valid.xyz"
    assert meta["last_epoch"] == EPOCHS - 1 and 0 <= meta["best_epoch"] < EPOCHS

    species = sorted({int(z) for a in pool[:8] + valid for z in a.numbers})
    ll = MetatomicLastLayer(load(manifest.parent / "model.pt"))
    assert ll.dtype == torch.float64 and ll.atomic_numbers == species
    assert ll.n_features == meta["last_layer_features"] == 6 * len(species)  # the last hidden layer, per species
    test = [a for a in frames if a.info["subset"] == "test"][:4]
    rebuilt, own = ll.energies(test)
    constants = ll.compute(test)["constants"]
    structure = np.repeat(np.arange(len(test)), [len(a) for a in test])
    interaction = own - np.bincount(structure, weights=constants)
    assert np.abs(interaction).min() > 1e-6
    # phi . w + constants is the model's energy to 1e-10 of its non-constant part, beside the rounding of totals of
    # ~1e4 eV (one ulp 1.8e-12 eV; measured: 3 ulp, the non-constant part ~1e-2 eV after 3 epochs)
    ulp = np.spacing(np.abs(own).max())
    np.testing.assert_allclose(rebuilt, own, rtol=0, atol=1e-10 * np.abs(interaction).max() + 8 * ulp)
    # the checkpoint holds the same model
    np.testing.assert_allclose(MetatomicLastLayer(manifest.parent / "model.ckpt").energies(test)[1], own, rtol=1e-13)
    # nothing left of the training run but the model, its checkpoints and the manifest
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["checkpoints", "manifest.json", "model.ckpt",
                                                                "model.pt"]


def test_checkpoints_are_the_model_along_training(trained):
    from experiments.models.soap_bpnn import load

    manifest, frames, _, _ = trained
    meta = json.loads(manifest.read_text())
    epochs = list(range(EPOCHS))  # metatrain's epochs 0, 1, 2 (epoch e after e + 1 passes)
    assert meta["checkpoints"] == [{"epoch": e, "epochs_trained": e + 1, "file": f"checkpoints/epoch_{e}.pt"}
                                   for e in epochs]
    assert sorted(p.name for p in (manifest.parent / "checkpoints").iterdir()) == [f"epoch_{e}.pt" for e in epochs]
    test = [a for a in frames if a.info["subset"] == "test"][:4]
    energies = {e: MetatomicLastLayer(load(manifest.parent / f"checkpoints/epoch_{e}.pt")).energies(test)[1]
                for e in epochs}
    for a, b in zip(epochs[:-1], epochs[1:]):  # the weights move between epochs
        assert np.abs(energies[a] - energies[b]).max() > 1e-8
    # metatrain's final model is the epoch of the best validation RMSE; its checkpoint is that model
    final = MetatomicLastLayer(load(manifest.parent / "model.pt")).energies(test)[1]
    np.testing.assert_allclose(energies[meta["best_epoch"]], final, rtol=1e-14)


def test_the_files_load_in_a_fresh_process(trained):
    """What the next stage does: load() without metatrain's training having loaded sphericart's operators."""
    import os
    import subprocess
    import sys

    manifest = trained[0]
    code = ("import sys; from experiments.models.soap_bpnn import load\n"
            "for path in sys.argv[1:]: print(load(path).capabilities().dtype)")
    files = [manifest.parent / "model.pt", manifest.parent / "checkpoints" / "epoch_2.pt"]
    done = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["float64", "float64"]


@pytest.mark.parametrize("override, message", [
    ("model.soap.atomic_gaussian_width=0.3", "has no density smearing; set it to null"),
    ("model.hidden_layers=[64,32]", r"hidden_layers=\[64, 32\]: metatrain's BPNN has one or more hidden layers of one"),
    ("model.target=forces", "target 'forces' is not one of"),
    ("model.checkpoint_epochs=[0,0]", r"checkpoint_epochs=\[0, 0\] must be distinct epochs >= 0"),
    ("model.checkpoint_epochs=[] model.checkpoint_runs=[n8]", "keep no checkpoint: checkpoint_epochs is empty"),
])
def test_settings_metatrain_cannot_honour_are_refused(override, message):
    from conftest import compose

    from experiments._stage import typed
    from experiments.models.soap_bpnn import check

    model = typed(compose(["model=soap_bpnn", "dataset=qm9", "scale=smoke", *override.split()]).model)
    with pytest.raises(ValueError, match=message):
        check(model)


def test_the_papers_settings_as_metatrain_options():
    from conftest import compose

    from experiments._stage import typed
    from experiments.models.soap_bpnn import check, options

    paper = typed(compose(["model=soap_bpnn", "dataset=qm9", "scale=paper"]).model)
    check(paper)
    arch = options(paper, Path("/data"), seed=0, device="cuda", n_train=10000)["architecture"]
    assert arch["model"]["soap"] == {"cutoff": {"radius": 5.0, "width": 0.5}, "max_radial": 9, "max_angular": 9}
    assert arch["model"]["bpnn"] == {"num_hidden_layers": 2, "num_neurons_per_layer": 64}
    assert arch["training"]["num_epochs"] == 2500 and arch["training"]["checkpoint_interval"] == 2501
    # an epoch beyond the training is refused for the runs that keep checkpoints only
    short = typed(compose(["model=soap_bpnn", "dataset=qm9", "scale=paper", "model.max_epochs=200"]).model)
    check(short)
    assert options(short, Path("/data"), seed=0, device="cpu", n_train=100, run="n500")["architecture"]
    with pytest.raises(ValueError, match=r"run n10000: checkpoint_epochs=\[0, 20.*below max_epochs = 200"):
        options(short, Path("/data"), seed=0, device="cpu", n_train=100, run="n10000")
    # Fig 3a's run writes a checkpoint every gcd(0, 20, 40, ..., 220) = 20 epochs (and keeps the listed ones)
    fig3 = options(paper, Path("/data"), seed=0, device="cuda", n_train=10000, run="n10000")["architecture"]
    assert fig3["training"]["checkpoint_interval"] == 20  # the paper's SOAP_BPNN_train.yaml: 20
    assert arch["training"]["batch_size"] == 32 and arch["training"]["learning_rate"] == 1e-3
