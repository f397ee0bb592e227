"""rigidity-llpr on a MACE model trained by mace_run_train: the adapter's reconstruction on a trained model,
the output file's content against the Python API, and each bad input ending in its error with no output."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mace")

from ase import Atoms  # noqa: E402
from ase.calculators.lj import LennardJones  # noqa: E402
from ase.io import read, write  # noqa: E402

from rigidity.last_layer import LLPR  # noqa: E402
from rigidity.last_layer.cli import load_last_layer, main  # noqa: E402

pytestmark = pytest.mark.slow


def lj_clusters(n, seed):
    """H/O clusters labelled by a Lennard-Jones potential (a stand-in reference, not DFT)."""
    rng = np.random.default_rng(seed)
    frames = []
    while len(frames) < n:
        k = int(rng.integers(3, 6))
        pos = rng.uniform(0, 3.2, size=(k, 3))
        if np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(k, 1)].min() < 0.9:
            continue
        atoms = Atoms(numbers=rng.choice([1, 8], size=k), positions=pos)
        atoms.calc = LennardJones(sigma=1.0, epsilon=0.1, rc=3.0)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        frames.append(atoms)
    return frames


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A 2-layer MACE trained for 2 epochs by mace-torch's own mace_run_train (about 20 s)."""
    folder = tmp_path_factory.mktemp("mace_run_train")
    write(folder / "train.xyz", lj_clusters(8, 0))
    write(folder / "valid.xyz", lj_clusters(6, 1))
    big = lj_clusters(3, 2)
    for atoms in big:  # ASE reads an "energy" key into a calculator: the output must keep it
        atoms.info["energy"] = atoms.info["REF_energy"]
    write(folder / "big.xyz", big)
    exe = shutil.which("mace_run_train") or str(__import__("pathlib").Path(sys.executable).parent / "mace_run_train")
    cmd = [exe, "--name", "tiny", "--train_file", "train.xyz", "--valid_file", "valid.xyz",
           "--E0s", "{1: -1.0, 8: -2.0}", "--model", "MACE", "--hidden_irreps", "8x0e", "--r_max", "3.0",
           "--max_num_epochs", "2", "--batch_size", "4", "--num_interactions", "2", "--correlation", "2",
           "--max_L", "0", "--num_channels", "8", "--MLP_irreps", "4x0e", "--energy_key", "REF_energy",
           "--forces_key", "REF_forces", "--device", "cpu", "--default_dtype", "float64", "--seed", "1",
           "--num_radial_basis", "4"]
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                          "PATH": str(__import__("pathlib").Path(sys.executable).parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_adapter_rebuilds_the_trained_models_energies_and_forces(trained):
    ll = load_last_layer(str(trained / "tiny.model"))
    frames = read(trained / "big.xyz", index=":")
    rebuilt, own = ll.energies(frames)
    e0 = np.array([sum(-1.0 if z == 1 else -2.0 for z in a.numbers) for a in frames])
    assert np.abs(own - e0).min() > 1e-4
    np.testing.assert_allclose(rebuilt - e0, own - e0, rtol=1e-10, atol=1e-12)
    ev = ll.evaluate(frames)
    rows, _ = ll.force_rows(frames)
    np.testing.assert_allclose(rows @ ll.weights, ev["forces"].reshape(-1), rtol=0,
                               atol=1e-10 * np.abs(ev["forces"]).max())


def test_command_line_writes_lpr_pr_and_calibrated_uncertainties(trained, capsys):
    out = trained / "big_lpr.xyz"
    scope = trained / "big.json.gz"
    argv = ["--model", str(trained / "tiny.model"), "--train", str(trained / "train.xyz"),
            "--valid", str(trained / "valid.xyz"), "--structures", str(trained / "big.xyz"),
            "--output", str(out), "--energy-key", "REF_energy", "--force-weight", "10", "--per-atom-energy",
            "--regularizer", "1e-6", "--chemiscope", str(scope), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "calibrated on 6 validation structures" in printed and "least rigid atoms" in printed
    # the same numbers through the Python API (extxyz keeps 8 significant digits)
    ll = load_last_layer(str(trained / "tiny.model"))
    llpr = LLPR(ll, regularizer=1e-6, force_weight=10.0, per_atom_energy=True, energy_key="REF_energy")
    llpr.fit(read(trained / "train.xyz", index=":"))
    alpha = llpr.calibrate(read(trained / "valid.xyz", index=":"))
    big = read(trained / "big.xyz", index=":")
    expected = llpr.predict(big)
    written = read(out, index=":")
    assert len(written) == 3
    for s, atoms in enumerate(written):
        np.testing.assert_allclose(atoms.arrays["lpr"], expected["lpr"][expected["structure"] == s], rtol=1e-6)
        np.testing.assert_allclose(atoms.info["pr"], expected["pr"][s], rtol=1e-6)
        np.testing.assert_allclose(atoms.info["energy_uncertainty"], np.sqrt(alpha / expected["pr"][s]), rtol=1e-6)
        np.testing.assert_allclose(atoms.positions, big[s].positions)
        # the input's labels are kept (ASE reads an "energy" back into a calculator again)
        assert atoms.get_potential_energy() == pytest.approx(atoms.info["REF_energy"])
    import gzip
    import json

    data = json.loads(gzip.open(scope).read())
    assert len(data["structures"]) == 3
    np.testing.assert_allclose(data["properties"]["lpr"]["values"], expected["lpr"], rtol=1e-8)


def bad_cases(folder):
    """(argument overrides, expected message) of each class of bad input."""
    not_a_model = folder / "not_a_model.pt"
    not_a_model.write_text("hello")
    import torch

    torch.save(torch.nn.Linear(2, 1), folder / "linear.pt")
    carbon = lj_clusters(2, 3)
    for a in carbon:
        a.numbers[0] = 6
    write(folder / "carbon.xyz", carbon)
    (folder / "empty.xyz").write_text("")
    write(folder / "two.xyz", lj_clusters(2, 4))
    return [
        ({"--model": str(not_a_model)}, "is not a model this command reads"),
        ({"--model": str(folder / "linear.pt")}, "holds a torch.nn.modules.linear.Linear, expected"),
        ({"--model": str(folder)}, "is a directory"),
        ({"--structures": str(folder / "carbon.xyz")}, r"structure 0 \(.*\) has elements \['C'\] the model does not"),
        ({"--train": str(folder / "empty.xyz")}, "holds no structures"),
        ({"--valid": str(folder / "two.xyz")}, "holds 2 structure\\(s\\): at least 5 are needed to calibrate"),
        ({"--train": str(folder / "missing.xyz")}, "does not exist"),
        ({"--loss": "huber", "--stress-weight": "1"}, "Huber loss with stress_weight > 0 is not supported"),
        ({"--chemiscope": str(folder / "scope.txt")}, "must end in .json or .json.gz"),
        ({"--output": str(folder / "no" / "out.xyz")}, "the folder of output .* does not exist"),
    ]


def test_each_bad_input_gives_its_error_and_writes_nothing(trained, capsys):
    import re

    for overrides, message in bad_cases(trained):
        out = trained / "bad_out.xyz"
        scope = trained / "bad_out.json"
        args = {"--model": str(trained / "tiny.model"), "--train": str(trained / "train.xyz"),
                "--valid": str(trained / "valid.xyz"), "--structures": str(trained / "big.xyz"),
                "--output": str(out), "--energy-key": "REF_energy", "--chemiscope": str(scope)}
        args.update(overrides)
        argv = [x for kv in args.items() for x in kv] + ["--quiet"]
        assert main(argv) == 2, overrides
        err = capsys.readouterr().err
        assert re.search(message, err), (overrides, err)
        assert not out.exists() and not scope.exists(), overrides
        assert not list(trained.glob(".*.tmp.*")), overrides
    # a failing run leaves an earlier output as it was
    out.write_text("earlier result")
    assert main(argv[:-1] + ["--min-valid", "10", "--quiet"]) == 2
    assert out.read_text() == "earlier result"
