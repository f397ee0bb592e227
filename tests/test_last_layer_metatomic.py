"""MetatomicLastLayer on a SOAP-BPNN that metatrain trains here (a few epochs on random H/C/O molecules with a Morse
energy): energies rebuilt from phi . w + constants, force and stress rows against finite differences and against the
model's own forces and stress (metatomic's ASE calculator), and energy uncertainties against metatrain's own llpr."""

import copy
import os
import random
import time
from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms

torch = pytest.importorskip("torch")
pytest.importorskip("metatomic.torch")
pytest.importorskip("metatomic_ase")
pytest.importorskip("vesin.metatomic")
pytest.importorskip("metatrain.soap_bpnn")  # metatrain's soap-bpnn extra

import rigidity  # noqa: E402
from rigidity.last_layer import LLPR, LastLayer, MetatomicLastLayer  # noqa: E402

SPECIES = (1, 6, 8)
E0 = {1: -13.6, 6: -1030.0, 8: -2040.0}  # eV, per-atom reference energies added to the Morse energy
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
REGULARIZER = 1e-3  # sigma^2 of our Hessian = metatrain llpr's `regularizer`


def morse(atoms):
    """Energy and forces of a Morse pair potential (species-dependent depth and range), plus E0 per atom."""
    depth, r0 = {1: 0.5, 6: 1.0, 8: 0.8}, {1: 0.7, 6: 1.4, 8: 1.3}
    Z, R = atoms.numbers, atoms.positions
    energy, forces = sum(E0[int(z)] for z in Z), np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            d = R[j] - R[i]
            r = np.linalg.norm(d)
            e, rr = np.sqrt(depth[Z[i]] * depth[Z[j]]), 0.5 * (r0[Z[i]] + r0[Z[j]])
            x = np.exp(-1.5 * (r - rr))
            energy += e * ((1 - x) ** 2 - 1)
            dedr = 2 * e * (1 - x) * 1.5 * x
            forces[i] += dedr * d / r
            forces[j] -= dedr * d / r
    return energy, forces


def molecules(n, seed, sizes=(3, 7)):
    """n random H/C/O molecules of 3-6 atoms in a 3 A cube, atoms at least 0.9 A apart, labelled by morse()."""
    rng = np.random.default_rng(seed)
    frames = []
    while len(frames) < n:
        size = int(rng.integers(*sizes))
        positions = []
        while len(positions) < size:
            p = rng.uniform(0, 3.0, 3)
            if all(np.linalg.norm(p - q) > 0.9 for q in positions):
                positions.append(p)
        atoms = Atoms(numbers=rng.choice(SPECIES, size=size), positions=positions)
        atoms.info["morse_energy"], atoms.arrays["morse_forces"] = morse(atoms)
        frames.append(atoms)
    return frames


def periodic_boxes(n=2, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cell = np.diag(rng.uniform(4.5, 5.5, size=3)) + rng.uniform(-0.3, 0.3, size=(3, 3))
        atoms = Atoms(numbers=rng.choice(SPECIES, size=5), cell=cell, pbc=True)
        atoms.set_scaled_positions(rng.uniform(size=(5, 3)))
        out.append(atoms)
    return out


@pytest.fixture(autouse=True, scope="module")
def plain_torchscript():
    """TorchScript's profiling executor spends seconds optimising the first calls of an exported model; off here."""
    with torch.jit.optimized_execution(False):
        yield


def _train(options, root, output):
    """metatrain's own training entry point (what `mtt train` runs), in this process, without its global seeds."""
    from metatrain.cli.train import train_model
    from omegaconf import OmegaConf

    np_state, py_state, hash_seed = np.random.get_state(), random.getstate(), os.environ.get("PYTHONHASHSEED")
    checkpoints = root / f"{output}-checkpoints"
    checkpoints.mkdir()
    try:
        with torch.random.fork_rng(), torch.jit.optimized_execution(False):
            train_model(OmegaConf.create(options), output=str(root / f"{output}.pt"),
                        extensions=str(root / "extensions"), checkpoint_dir=str(checkpoints))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        if hash_seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hash_seed


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny SOAP-BPNN (legacy: one network per species; SOAP cutoff 4 A, n_max = l_max = 2, one hidden layer of 8,
    float64) trained by metatrain for 3 epochs on 24 molecules (energies and forces), exported; and metatrain's llpr
    wrapped around its checkpoint, its covariance over the same 24 molecules, calibrated on 8 others."""
    import ase.io

    root = tmp_path_factory.mktemp("metatrain")
    train, calib = molecules(24, seed=0), molecules(8, seed=1)
    ase.io.write(root / "train.xyz", train, format="extxyz")
    ase.io.write(root / "calib.xyz", calib, format="extxyz")
    # what metatrain reads: extxyz keeps 8 decimals of the positions
    train, calib = ase.io.read(root / "train.xyz", ":"), ase.io.read(root / "calib.xyz", ":")
    systems = {"read_from": str(root / "train.xyz"), "length_unit": "angstrom"}
    targets = {"energy": {"key": "morse_energy", "unit": "eV", "forces": {"key": "morse_forces"}}}
    start = time.perf_counter()
    _train({
        "seed": 42, "base_precision": 64,
        "architecture": {"name": "soap_bpnn", "model": {
            "soap": {"cutoff": {"radius": 4.0, "width": 0.5}, "max_radial": 2, "max_angular": 2},
            "bpnn": {"num_hidden_layers": 1, "num_neurons_per_layer": 8}},
            "training": {"batch_size": 8, "num_epochs": 3, "log_interval": 1, "checkpoint_interval": 100}},
        "training_set": {"systems": systems, "targets": targets}, "validation_set": 0.25, "test_set": 0.0,
    }, root, "model")
    seconds = time.perf_counter() - start
    _train({
        "seed": 42, "base_precision": 64,
        "architecture": {"name": "llpr", "training": {
            "model_checkpoint": str(root / "model.ckpt"), "batch_size": 4, "regularizer": REGULARIZER,
            "calibration_method": "squared_residuals"}},
        "training_set": {"systems": systems, "targets": {"energy": {"key": "morse_energy", "unit": "eV"}}},
        "validation_set": {"systems": {"read_from": str(root / "calib.xyz"), "length_unit": "angstrom"},
                           "targets": {"energy": {"key": "morse_energy", "unit": "eV"}}},
        "test_set": 0.0,
    }, root, "llpr")
    return SimpleNamespace(root=root, train=train, calib=calib, pt=root / "model.pt", ckpt=root / "model.ckpt",
                           llpr=root / "llpr.pt", seconds=seconds)


def load(path):
    import sphericart.torch  # noqa: F401  (the TorchScript ops the exported SOAP-BPNN calls)
    from metatomic.torch import load_atomistic_model

    return load_atomistic_model(str(path))


@pytest.fixture(scope="session")
def exported(trained):
    return load(trained.pt)


def calculator(model):
    from metatomic_ase import MetatomicCalculator

    return MetatomicCalculator(model, check_consistency=True)


def test_energy_is_phi_dot_weights_plus_constants(trained, exported):
    assert trained.seconds < 40, f"training the tiny SOAP-BPNN took {trained.seconds:.0f} s"
    assert torch.get_default_dtype() == torch.float32  # metatrain's base_precision did not leak
    ll = MetatomicLastLayer(exported)
    assert isinstance(ll, LastLayer)
    # the legacy SOAP-BPNN: one block of 8 last-layer features per species
    assert ll.n_features == 24 and ll.blocks == {"H": slice(0, 8), "C": slice(8, 16), "O": slice(16, 24)}
    assert ll.additive_names == ["CompositionModel"]
    frames = molecules(5, seed=7)
    out = ll.compute(frames, batch_size=2)
    phi, constants, structure = out["phi"], out["constants"], out["structure"]
    assert phi.shape == (sum(len(a) for a in frames), 24)
    assert structure.tolist() == [k for k, a in enumerate(frames) for _ in a]
    numbers = np.concatenate([a.numbers for a in frames])
    for z, block in zip(SPECIES, ll.blocks.values()):
        other = np.setdiff1d(np.arange(24), np.arange(24)[block])
        assert np.all(phi[numbers == z][:, other] == 0) and np.abs(phi[numbers == z][:, block]).max() > 0
        assert np.ptp(constants[numbers == z]) == 0  # composition energies: one per species
    # the model's own energies, as metatomic's ASE calculator gets them
    own = np.array(calculator(exported).compute_energy(frames)["energy"])
    np.testing.assert_allclose(out["energy"], own, rtol=1e-14)
    rebuilt, model_energy = ll.energies(frames, batch_size=3)
    interaction = own - np.bincount(structure, weights=constants)
    assert np.abs(interaction).min() > 1e-3
    # rebuilt to rounding: the total to ~1e-16, the interaction (~0.05 eV beside ~1e3 eV of composition energies) to
    # ~6e-12 of it (measured)
    np.testing.assert_allclose(rebuilt, own, rtol=1e-13)
    np.testing.assert_allclose(rebuilt - own, 0, atol=1e-10 * np.abs(interaction).max())
    np.testing.assert_allclose(ll.features(frames, batch_size=1)[0], phi, rtol=0, atol=1e-13)


def test_checkpoint_and_exported_model_agree(trained, exported):
    from metatrain.utils.io import load_model

    frames = molecules(3, seed=8)
    ll = MetatomicLastLayer(exported)
    for other in (MetatomicLastLayer(load_model(str(trained.ckpt))), MetatomicLastLayer(trained.ckpt)):
        np.testing.assert_allclose(other.weights, ll.weights, rtol=1e-14)
        assert other.blocks == ll.blocks
        a, b = ll.compute(frames), other.compute(frames)
        for key in ("phi", "constants", "energy"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reduce, mode", [("sum", "reverse"), ("mean", "reverse"), ("sum", "forward")])
def test_force_rows_are_minus_the_derivatives_of_the_structure_features(exported, reduce, mode):
    ll = MetatomicLastLayer(exported)
    frames = molecules(2, seed=9, sizes=(3, 5))
    rows, structure = ll.force_rows(frames, reduce=reduce, batch_size=2, mode=mode)
    assert rows.shape == (3 * sum(len(a) for a in frames), ll.n_features)
    h = 1e-5
    reduce_fn = np.sum if reduce == "sum" else np.mean
    for s, atoms in enumerate(frames):
        displaced = []
        for a in range(len(atoms)):
            for x in range(3):
                for sign in (1, -1):
                    moved = atoms.copy()
                    moved.positions[a, x] += sign * h
                    displaced.append(moved)
        phi, index = ll.features(displaced, batch_size=len(displaced))
        Phi = np.array([reduce_fn(phi[index == k], axis=0) for k in range(len(displaced))])
        fd = -(Phi[0::2] - Phi[1::2]) / (2 * h)
        np.testing.assert_allclose(rows[structure == s], fd, rtol=0, atol=1e-5 * np.abs(fd).max())


def test_force_rows_times_weights_are_the_models_forces(exported):
    ll = MetatomicLastLayer(exported)
    frames = molecules(4, seed=10)
    rows, _ = ll.force_rows(frames, batch_size=3)
    forces = np.concatenate(calculator(exported).compute_energy(frames, compute_forces_and_stresses=True)["forces"])
    np.testing.assert_allclose(rows @ ll.weights, forces.reshape(-1), rtol=0, atol=1e-10 * np.abs(forces).max())
    forward, _ = ll.force_rows(frames, batch_size=4, mode="forward")
    np.testing.assert_allclose(forward, rows, rtol=0, atol=1e-11 * np.abs(rows).max())


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_stress_rows_are_strain_derivatives_and_give_the_models_stress(exported, mode):
    ll = MetatomicLastLayer(exported)
    frames = periodic_boxes()
    out = ll.compute(frames, forces=True, stress=True, batch_size=2, mode=mode)
    rows = out["stress_rows"]
    assert rows.shape == (6 * len(frames), ll.n_features)
    h = 1e-5
    for s, atoms in enumerate(frames):
        strained = []
        for a, b in VOIGT:
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = 0.5 * h if a != b else h
            for sign in (1, -1):
                moved = atoms.copy()
                moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=False)
                moved.positions = atoms.positions @ (np.eye(3) + sign * eps)
                strained.append(moved)
        phi, index = ll.features(strained, batch_size=len(strained))
        Phi = np.array([phi[index == k].sum(0) for k in range(len(strained))])
        fd = (Phi[0::2] - Phi[1::2]) / (2 * h) / atoms.get_volume()
        np.testing.assert_allclose(rows[6 * s:6 * s + 6], fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    result = calculator(exported).compute_energy(frames, compute_forces_and_stresses=True)
    stress = np.array([[(st[a, b] + st[b, a]) / 2 for a, b in VOIGT] for st in result["stress"]])
    np.testing.assert_allclose(rows @ ll.weights, stress.reshape(-1), rtol=0, atol=1e-10 * np.abs(stress).max())
    forces = np.concatenate(result["forces"]).reshape(-1)
    np.testing.assert_allclose(out["force_rows"] @ ll.weights, forces, rtol=0, atol=1e-10 * np.abs(forces).max())
    with pytest.raises(ValueError, match="not periodic"):
        ll.stress_rows(molecules(1, seed=11))


def test_energy_uncertainties_match_metatrains_llpr(trained):
    """Ours: H = sum_s Phibar_s Phibar_s^T + sigma^2 I over the training molecules, Phibar_s the *mean* feature of
    structure s (metatrain's llpr divides the summed features of a per-structure target by the number of atoms: the
    Gauss-Newton Hessian of its per-atom energy loss; it uses no force rows), variance of a structure's energy
    Phi_s^T H^-1 Phi_s with the *summed* features (as llpr's forward does), and calibrate(..., "nll") on the
    calibration molecules (llpr's "squared_residuals": alpha^2 = mean r^2 / v). Everything is float64 on both sides:
    the remaining difference is rounding (llpr solves with its Cholesky factor, rigidity with its inverse factor)."""
    from metatomic.torch import ModelOutput

    llpr = load(trained.llpr)
    state = llpr.module.state_dict()
    covariance = state["covariance_energy_uncertainty"].double().numpy()
    multiplier = float(state["multiplier_energy_uncertainty"])

    ll = MetatomicLastLayer(trained.ckpt)  # the checkpoint llpr wrapped
    d = ll.n_features
    train = ll.compute(trained.train)
    G_mean = structure_rows(train, np.mean)
    h = rigidity.Hessian(d, regularizer=REGULARIZER).add(G_mean)
    np.testing.assert_allclose(h.matrix - REGULARIZER * np.eye(d), covariance, rtol=0,
                               atol=1e-13 * np.abs(covariance).max())

    calib = ll.compute(trained.calib)
    residuals = calib["energy"] - np.array([a.info["morse_energy"] for a in trained.calib])
    alpha2 = rigidity.calibrate(h.variance(structure_rows(calib, np.sum)), residuals, method="nll")
    np.testing.assert_allclose(alpha2, multiplier**2, rtol=1e-12)  # measured: 3e-15

    frames = molecules(6, seed=12)
    test = ll.compute(frames)
    sigma = np.sqrt(alpha2 * h.variance(structure_rows(test, np.sum)))
    sigma_atoms = np.sqrt(alpha2 * h.variance(test["phi"]))  # local (LPR) uncertainties of the atomic energies
    run = calculator(llpr).run_model
    theirs = run(frames, {"energy": ModelOutput(sample_kind="system"),
                          "energy_uncertainty": ModelOutput(sample_kind="system")})
    np.testing.assert_allclose(theirs["energy"].block().values.numpy().ravel(), test["energy"], rtol=1e-13)
    # measured: 2e-15 (float64 rounding through the two factorisations)
    np.testing.assert_allclose(theirs["energy_uncertainty"].block().values.numpy().ravel(), sigma, rtol=1e-11)
    local = run(frames, {"energy": ModelOutput(sample_kind="atom"),
                         "energy_uncertainty": ModelOutput(sample_kind="atom")})["energy_uncertainty"].block()
    order = np.argsort(local.samples.values[:, 0].numpy() * 1000 + local.samples.values[:, 1].numpy())
    np.testing.assert_allclose(local.values.numpy().ravel()[order], sigma_atoms, rtol=1e-11)
    # the same through rigidity's LLPR object: per-atom energy rows, calibrated by likelihood
    ours = LLPR(ll, regularizer=REGULARIZER, per_atom_energy=True, energy_key="morse_energy").fit(trained.train)
    np.testing.assert_allclose(ours.calibrate(trained.calib), multiplier**2, rtol=1e-12)
    np.testing.assert_allclose(ours.energy_uncertainty(frames), theirs["energy_uncertainty"].block().values.numpy()
                               .ravel(), rtol=1e-11)
    # the llpr wrapper of the exported llpr model is read through to its SOAP-BPNN
    np.testing.assert_allclose(MetatomicLastLayer(llpr).weights, ll.weights, rtol=1e-14)


def structure_rows(out, reduce_fn):
    n = int(out["structure"].max()) + 1
    return np.array([reduce_fn(out["phi"][out["structure"] == s], axis=0) for s in range(n)])


def _untrained(architecture, **model):
    """An untrained metatrain model of H, C and O (float64), exported without TorchScript."""
    from metatrain.utils.architectures import get_default_hypers, import_architecture
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    info = DatasetInfo(length_unit="angstrom", atomic_types=list(SPECIES),
                       targets={"energy": get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})})
    hypers = copy.deepcopy(get_default_hypers(architecture)["model"])
    for key, value in model.items():
        if isinstance(value, dict):
            hypers[key].update(value)
        else:
            hypers[key] = value
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = import_architecture(architecture).__model__(hypers, info).to(torch.float64)
    return net


def test_zbl_energies_are_constants():
    soap = {"max_radial": 2, "max_angular": 2, "cutoff": {"radius": 4.0, "width": 0.5}}
    model = _untrained("soap_bpnn", soap=soap, bpnn={"num_hidden_layers": 1, "num_neurons_per_layer": 8}, zbl=True)
    ll = MetatomicLastLayer(model)
    assert ll.additive_names == ["CompositionModel", "ZBL"]
    frames = molecules(4, seed=13)
    out = ll.compute(frames)
    numbers = np.concatenate([a.numbers for a in frames])
    assert np.ptp(out["constants"][numbers == 6]) > 0  # the repulsion depends on the positions
    rebuilt, own = ll.energies(frames)
    np.testing.assert_allclose(rebuilt, own, rtol=0, atol=1e-12 * np.abs(own).max())
    # the model's forces (one backward pass of its energy) are rows . w plus the repulsion's own forces
    fast = ll.evaluate(frames)
    assert ll.compute(frames, forces=True)["constant_forces"].any()
    generic = LastLayer.evaluate(ll, frames)
    np.testing.assert_allclose(generic["forces"], fast["forces"], rtol=0, atol=1e-10 * np.abs(fast["forces"]).max())
    h = 1e-5
    atoms = frames[0]
    for a, x in ((0, 0), (1, 2)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, x] += h
        minus.positions[a, x] -= h
        fd = -(ll.energies([plus])[1][0] - ll.energies([minus])[1][0]) / (2 * h)
        np.testing.assert_allclose(fast["forces"][a, x], fd, rtol=1e-6, atol=1e-8)


def test_pet_without_last_layer_biases_and_refused_with_them():
    small = dict(d_pet=4, d_head=4, d_node=4, d_feedforward=4, num_heads=1, num_attention_layers=1, num_gnn_layers=1)
    model = _untrained("pet", **small)
    with pytest.raises(ValueError, match="energy last layer 'backend.node_last_layers.energy.0.energy___0' has a bias"):
        MetatomicLastLayer(model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "last_layers" in name and name.endswith("bias"):
                parameter.zero_()
    ll = MetatomicLastLayer(model)
    assert list(ll.blocks) == ["backend.node_last_layers.energy.0.energy___0",
                               "backend.edge_last_layers.energy.0.energy___0"]
    frames = molecules(3, seed=14)
    rebuilt, own = ll.energies(frames)
    np.testing.assert_allclose(rebuilt, own, rtol=0, atol=1e-12 * np.abs(own).max())
    rows, _ = ll.force_rows(frames)
    forces = np.concatenate(calculator(model.export()).compute_energy(frames, compute_forces_and_stresses=True)
                            ["forces"]).reshape(-1)
    np.testing.assert_allclose(rows @ ll.weights, forces, rtol=0, atol=1e-10 * np.abs(forces).max())


def _toy_model(outputs, **attributes):
    """A metatomic AtomisticModel declaring ``outputs`` (name -> sample kind) and computing nothing."""
    from typing import Dict, List, Optional  # noqa: UP035  (TorchScript-style annotations metatomic checks)

    from metatensor.torch import Labels, TensorMap
    from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput, System

    class Toy(torch.nn.Module):
        def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],  # noqa: UP006
                    selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:  # noqa: UP006, UP045
            return {}

    toy = Toy()
    for key, value in attributes.items():
        setattr(toy, key, value)
    capabilities = ModelCapabilities(
        outputs={name: ModelOutput(unit="eV" if name == "energy" else "", sample_kind=kind)
                 for name, kind in outputs.items()},
        atomic_types=[1], interaction_range=0.0, length_unit="angstrom", supported_devices=["cpu"], dtype="float64")
    return AtomisticModel(toy.eval(), ModelMetadata(), capabilities)


def test_bad_input_is_named(exported):
    ll = MetatomicLastLayer(exported)
    with pytest.raises(ValueError, match=r"atomic numbers \[7\] the model does not know \(it knows \[1, 6, 8\]\)"):
        ll.features([Atoms("CN", positions=[[0, 0, 0], [0, 0, 1.1]])])
    with pytest.raises(ValueError, match="no structures"):
        ll.features([])
    with pytest.raises(ValueError, match="structure 1 is a str"):
        ll.features([molecules(1, seed=15)[0], "H2O"])
    with pytest.raises(ValueError, match="reduce must be one of"):
        ll.force_rows(molecules(1, seed=15), reduce="max")
    with pytest.raises(TypeError, match="expected a metatomic AtomisticModel"):
        MetatomicLastLayer(torch.nn.Linear(3, 1))
    features = "mtt::aux::energy_last_layer_features"
    with pytest.raises(ValueError, match=r"no 'energy' output \(its outputs: \['mtt::dipole'\]\)"):
        MetatomicLastLayer(_toy_model({"mtt::dipole": "system"}))
    with pytest.raises(ValueError, match=r"does not export 'mtt::aux::energy_last_layer_features' \(its outputs: "
                                         r"\['energy'\]\)"):
        MetatomicLastLayer(_toy_model({"energy": "system"}))
    with pytest.raises(ValueError, match=r"does not list the weights of its energy last layer"):
        MetatomicLastLayer(_toy_model({"energy": "system", features: "atom"}))


def test_command_line_reads_an_exported_model_and_a_checkpoint(trained, tmp_path, capsys):
    """rigidity-llpr on metatrain's own files: the exported .pt and the .ckpt give the same LPR."""
    import ase.io

    from rigidity.last_layer.cli import main

    ase.io.write(tmp_path / "big.xyz", molecules(2, seed=5), format="extxyz")
    written = []
    for model in (trained.pt, trained.ckpt):
        out = tmp_path / f"lpr_{model.suffix[1:]}.xyz"
        argv = ["--model", str(model), "--train", str(trained.root / "train.xyz"),
                "--valid", str(trained.root / "calib.xyz"), "--structures", str(tmp_path / "big.xyz"),
                "--output", str(out), "--energy-key", "morse_energy", "--per-atom-energy", "--quiet",
                "--regularizer", str(REGULARIZER)]
        assert main(argv) == 0, capsys.readouterr().err
        assert "MetatomicLastLayer" in capsys.readouterr().out
        written.append(ase.io.read(out, ":"))
    for a, b in zip(*written):
        np.testing.assert_allclose(a.arrays["lpr"], b.arrays["lpr"], rtol=1e-6)
        assert np.isfinite(a.info["energy_uncertainty"]) and a.info["rigidity_calibrated"]
    # the installed command, in a fresh process (the exported model's TorchScript operators loaded by the adapter)
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "rigidity-llpr"
    out = tmp_path / "fresh.xyz"
    fresh = ["--model", str(trained.pt), *argv[2:8], "--output", str(out), *argv[10:]]
    done = subprocess.run([str(exe), *fresh], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(ase.io.read(out, ":")[0].arrays["lpr"], written[0][0].arrays["lpr"], rtol=1e-6)


def test_the_profiling_executor_changes_the_speed_only(exported):
    """optimize=True lets TorchScript optimise the graph (slower for structures of varying size): same numbers."""
    frames = molecules(4, seed=9)
    plain, optimised = MetatomicLastLayer(exported), MetatomicLastLayer(exported, optimize=True)
    assert not plain.optimize and optimised.optimize
    for _ in range(3):  # the profiling executor optimises after the first calls
        a = optimised.compute(frames, forces=True, batch_size=2)
    b = plain.compute(frames, forces=True, batch_size=2)
    for key in ("phi", "constants", "energy", "force_rows"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12)
