"""PaiNNLastLayer (rigidity.last_layer): energies rebuilt from phi . w + constants for sum and avg aggregation with
schnetpack's postprocessors, force and stress rows against finite differences and the model's own forces and stress."""

import copy
from functools import cache

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("torch")
spk = pytest.importorskip("schnetpack")

import torch  # noqa: E402

from rigidity.last_layer import LastLayer, PaiNNLastLayer  # noqa: E402

CUTOFF = 4.0
E0 = {1: -13.6, 8: -2040.0}


def energy_modules(kind, aggregation, extensive, stress):
    """Output modules and postprocessors: "none" (casting only), "offsets" (schnetpack's way: a ScaleProperty
    output module between the Atomwise and Forces, mean and atom references added in postprocessing) or
    "scaled_offsets" (a ScaleProperty postprocessor after the offsets: it scales them too, but not the forces)."""
    atomrefs = torch.zeros(100, dtype=torch.float64)
    for z, e in E0.items():
        atomrefs[z] = e
    offsets = spk.transform.AddOffsets("energy", add_mean=True, add_atomrefs=True, is_extensive=extensive,
                                       atomrefs=atomrefs, property_mean=torch.tensor([-0.7], dtype=torch.float64))
    scale = spk.transform.ScaleProperty("energy", scale=torch.tensor([1.7], dtype=torch.float64))
    atomwise = spk.atomistic.Atomwise(n_in=16, output_key="energy", aggregation_mode=aggregation)
    forces = spk.atomistic.Forces(calc_stress=stress)
    cast = spk.transform.CastTo64()
    return {"none": ([atomwise, forces], [cast]),
            "offsets": ([atomwise, scale, forces], [cast, offsets]),
            "scaled_offsets": ([atomwise, forces], [cast, offsets, scale])}[kind]


@cache
def small_model(aggregation="sum", post="offsets", extensive=True, stress=False, representation="painn", seed=0):
    """A 2-interaction PaiNN (or SchNet) on H and O from schnetpack's constructors, float64, random weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        radial = spk.nn.GaussianRBF(n_rbf=8, cutoff=CUTOFF)
        if representation == "painn":
            rep = spk.representation.PaiNN(n_atom_basis=16, n_interactions=2, radial_basis=radial,
                                           cutoff_fn=spk.nn.CosineCutoff(CUTOFF))
        else:
            rep = spk.representation.SchNet(n_atom_basis=16, n_interactions=2, radial_basis=radial,
                                            cutoff_fn=spk.nn.CosineCutoff(CUTOFF))
        inputs = [spk.atomistic.Strain(), spk.atomistic.PairwiseDistances()] if stress \
            else [spk.atomistic.PairwiseDistances()]
        outputs, post = energy_modules(post, aggregation, extensive, stress)
        model = spk.model.NeuralNetworkPotential(representation=rep, input_modules=inputs, output_modules=outputs,
                                                 postprocessors=post)
        with torch.no_grad():  # schnetpack initialises biases to zero: make them count
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.uniform_(-0.5, 0.5)
    return model.double().eval()


def read(model):
    """The adapter, expecting schnetpack's warning where the energy is scaled after the forces."""
    if any(isinstance(pp, spk.transform.ScaleProperty) for pp in model.postprocessors):
        with pytest.warns(UserWarning, match="scales its energy by 1.7 after its Forces"):
            return PaiNNLastLayer(model)
    return PaiNNLastLayer(model)


def clusters(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [Atoms(numbers=rng.choice([1, 8], size=3 + k), positions=rng.uniform(0, 3.0, size=(3 + k, 3)))
            for k in range(n)]


def periodic_boxes(n=2, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cell = np.diag(rng.uniform(4.5, 5.5, size=3)) + rng.uniform(-0.3, 0.3, size=(3, 3))
        atoms = Atoms(numbers=rng.choice([1, 8], size=5), cell=cell, pbc=True)
        atoms.set_scaled_positions(rng.uniform(size=(5, 3)))
        out.append(atoms)
    return out


def model_outputs(model, frames):
    """The model's own outputs through schnetpack's AtomsConverter, as SpkCalculator computes them."""
    converter = spk.interfaces.AtomsConverter(neighbor_list=spk.transform.ASENeighborList(cutoff=CUTOFF),
                                              dtype=torch.float64)
    return {k: v.detach().numpy() for k, v in model(converter(frames)).items()}


def displaced(frames, h):
    """Every structure moved by +-h along every atom coordinate: (plus, minus) lists in the same order."""
    plus, minus = [], []
    for atoms in frames:
        for a in range(len(atoms)):
            for x in range(3):
                for sign, out in ((1, plus), (-1, minus)):
                    moved = atoms.copy()
                    moved.positions[a, x] += sign * h
                    out.append(moved)
    return plus, minus


@pytest.mark.parametrize("aggregation, post, extensive, representation", [
    ("sum", "offsets", True, "painn"), ("sum", "none", True, "painn"), ("sum", "scaled_offsets", True, "painn"),
    ("avg", "offsets", False, "painn"), ("avg", "offsets", True, "painn"), ("sum", "offsets", True, "schnet")])
def test_energy_is_phi_dot_weights_plus_constants(aggregation, post, extensive, representation):
    model = small_model(aggregation, post, extensive, representation=representation)
    ll = read(model)
    assert isinstance(ll, LastLayer)
    assert ll.n_features == 8 and ll.blocks == {"readout": slice(0, 8)} and ll.aggregation == aggregation
    frames = clusters()
    out = ll.compute(frames, batch_size=3)
    phi, structure, constants = out["phi"], out["structure"], out["constants"]
    assert phi.shape == (sum(len(a) for a in frames), 8)
    assert structure.tolist() == [k for k, a in enumerate(frames) for _ in a]
    rebuilt, own = ll.energies(frames, batch_size=2)
    np.testing.assert_allclose(own, model_outputs(model, frames)["energy"], rtol=1e-13)
    c = np.bincount(structure, weights=constants)
    # the non-constant part (without the large atom references and the bias) is rebuilt to rounding
    np.testing.assert_allclose(rebuilt - c, own - c, rtol=1e-10, atol=1e-12)
    assert np.abs(own - c).min() > 1e-3  # a non-trivial learned energy
    if post != "none":
        n = np.array([len(a) for a in frames])
        e0 = np.array([sum(E0[z] for z in a.numbers) for a in frames])
        offsets = e0 - 0.7 * n if extensive else e0 / n - 0.7  # an intensive mean is added once
        if post == "scaled_offsets":
            offsets = 1.7 * offsets
        # what is left besides the offsets is the (scaled, averaged) bias of the last layer
        bias = model.output_modules[0].outnet[-1].bias.item() * (1.7 if post != "none" else 1.0)
        per_structure = bias * (n if aggregation == "sum" else 1)
        np.testing.assert_allclose(c - offsets, per_structure, rtol=0, atol=1e-9)
    if aggregation == "avg":  # phi are the raw layer inputs over the atom count
        raw = phi * np.bincount(structure)[structure][:, None]
        np.testing.assert_allclose(np.bincount(structure, weights=raw @ ll.weights) / np.bincount(structure)
                                   + c, own, rtol=1e-12)
    # batching does not change the features
    np.testing.assert_allclose(ll.features(frames, batch_size=1)[0], phi, rtol=0, atol=1e-13)


@pytest.mark.parametrize("aggregation, reduce, mode", [("sum", "sum", "reverse"), ("sum", "mean", "forward"),
                                                       ("avg", "sum", "reverse")])
def test_force_rows_are_minus_the_derivatives_of_the_structure_features(aggregation, reduce, mode):
    ll = PaiNNLastLayer(small_model(aggregation))
    frames = clusters(3)
    rows, structure = ll.force_rows(frames, reduce=reduce, batch_size=3, mode=mode)
    assert rows.shape == (3 * sum(len(a) for a in frames), ll.n_features)
    h = 1e-5
    plus, minus = displaced(frames, h)
    fp, sp = ll.features(plus, batch_size=len(plus))
    fm, _ = ll.features(minus, batch_size=len(minus))
    n = np.bincount(sp)
    reduce_by = np.ones(len(n)) if reduce == "sum" else n.astype(float)
    Phi_p = np.stack([np.bincount(sp, weights=fp[:, k], minlength=len(n)) for k in range(fp.shape[1])], 1)
    Phi_m = np.stack([np.bincount(sp, weights=fm[:, k], minlength=len(n)) for k in range(fm.shape[1])], 1)
    fd = -(Phi_p - Phi_m) / reduce_by[:, None] / (2 * h)
    np.testing.assert_allclose(rows, fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    assert np.abs(fd).max() > 1e-2


@pytest.mark.parametrize("aggregation, post", [("sum", "offsets"), ("avg", "offsets"), ("sum", "scaled_offsets")])
def test_force_rows_times_weights_are_the_models_forces(aggregation, post):
    model = small_model(aggregation, post)
    ll = read(model)
    frames = clusters(4)
    rows, _ = ll.force_rows(frames, batch_size=3)
    forces = model_outputs(model, frames)["forces"]
    if post == "scaled_offsets":  # schnetpack's Forces run before the postprocessors: unscaled forces
        forces = 1.7 * forces
    np.testing.assert_allclose(rows @ ll.weights, forces.reshape(-1), rtol=0, atol=1e-10 * np.abs(forces).max())
    # the model's Forces module is left as it was (eval: no graph kept)
    assert not model.output_modules[-1].training


def test_forward_and_reverse_modes_agree_on_mixed_sizes():
    ll = PaiNNLastLayer(small_model())
    frames = clusters(4)  # 3 to 6 atoms: the forward tangents of the smaller structures fall off their end
    reverse, _ = ll.force_rows(frames, batch_size=4, mode="reverse")
    forward, _ = ll.force_rows(frames, batch_size=4, mode="forward")
    np.testing.assert_allclose(forward, reverse, rtol=0, atol=1e-11 * np.abs(reverse).max())


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_stress_rows_are_strain_derivatives_and_give_the_models_stress(mode):
    model = small_model(stress=True)
    ll = PaiNNLastLayer(model)
    frames = periodic_boxes()
    out = ll.compute(frames, forces=True, stress=True, batch_size=2, mode=mode)
    rows = out["stress_rows"]
    assert rows.shape == (6 * len(frames), ll.n_features)
    # finite differences of the summed features under a symmetric strain of positions and cell
    h = 1e-5
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    strained = []
    for atoms in frames:
        for a, b in voigt:
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = 0.5 * h if a != b else h
            for sign in (1, -1):
                moved = atoms.copy()
                moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=False)
                moved.positions = atoms.positions @ (np.eye(3) + sign * eps)
                strained.append(moved)
    phi, structure = ll.features(strained, batch_size=len(strained))
    Phi = np.stack([np.bincount(structure, weights=phi[:, k]) for k in range(phi.shape[1])], 1)
    volumes = np.repeat([a.get_volume() for a in frames], 6)
    fd = (Phi[0::2] - Phi[1::2]) / (2 * h) / volumes[:, None]
    np.testing.assert_allclose(rows, fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    # against the model's own stress (schnetpack's 3 x 3 tensor, in ASE's Voigt order) and forces
    own = model_outputs(model, frames)
    stress = own["stress"][:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    np.testing.assert_allclose(rows @ ll.weights, stress.reshape(-1), rtol=0, atol=1e-9 * np.abs(stress).max())
    np.testing.assert_allclose(out["force_rows"] @ ll.weights, own["forces"].reshape(-1), rtol=0,
                               atol=1e-10 * np.abs(own["forces"]).max())
    with pytest.raises(ValueError, match="not periodic"):
        ll.stress_rows(clusters(1))


def test_a_float32_model_is_read_in_float64_without_changing_it():
    model32 = copy.deepcopy(small_model()).float()
    ll = PaiNNLastLayer(model32)
    assert next(model32.parameters()).dtype == torch.float32 and ll.model is not model32
    rebuilt, own = ll.energies(clusters())
    np.testing.assert_allclose(own, model_outputs(ll.model, clusters())["energy"], rtol=1e-13)
    np.testing.assert_allclose(rebuilt, own, rtol=1e-12)


def test_bad_input_is_named():
    model = small_model()
    ll = PaiNNLastLayer(model)
    with pytest.raises(ValueError, match=r"atomic numbers \[100\] the model cannot take"):
        ll.features([Atoms(numbers=[1, 100], positions=[[0, 0, 0], [0, 0, 1.1]])])
    with pytest.raises(ValueError, match="no structures"):
        ll.features([])
    with pytest.raises(ValueError, match="structure 1 is a str"):
        ll.features([clusters(1)[0], "H2O"])
    with pytest.raises(ValueError, match="reduce must be one of"):
        ll.force_rows(clusters(1), reduce="max")
    with pytest.raises(ValueError, match="batch_size"):
        ll.features(clusters(1), batch_size=0)
    with pytest.raises(TypeError, match="expected a schnetpack NeuralNetworkPotential, got Linear"):
        PaiNNLastLayer(torch.nn.Linear(3, 1))
    with pytest.raises(ValueError, match="dtype must be one of"):
        PaiNNLastLayer(model, dtype="float16")
    rep = model.representation
    no_energy = spk.model.NeuralNetworkPotential(
        representation=rep, input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=16, output_key="y"), spk.atomistic.Forces()])
    with pytest.raises(ValueError, match=r"one Atomwise output writing 'energy', found output modules .*'y'"):
        PaiNNLastLayer(no_energy.double())
    unknown = spk.model.NeuralNetworkPotential(
        representation=rep, input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=16, output_key="energy")],
        postprocessors=[spk.transform.RemoveOffsets("energy", remove_mean=True)])
    with pytest.raises(ValueError, match="postprocessor RemoveOffsets is not supported"):
        PaiNNLastLayer(unknown.double())
    no_distances = spk.model.NeuralNetworkPotential(
        representation=rep, output_modules=[spk.atomistic.Atomwise(n_in=16, output_key="energy")])
    with pytest.raises(ValueError, match=r"input modules \[\] have no PairwiseDistances"):
        PaiNNLastLayer(no_distances.double())
    # a model changed after construction no longer matches its rebuilt energies: refused, not silently wrong
    changed = PaiNNLastLayer(small_model(seed=1))
    changed.model.do_postprocessing = False
    try:
        with pytest.raises(RuntimeError, match="differ from the model's"):
            changed.features(clusters(1))
    finally:
        changed.model.do_postprocessing = True


@pytest.mark.parametrize("aggregation", ["sum", "avg"])
def test_evaluate_gives_the_models_own_forces_in_one_pass(aggregation):
    model = small_model(aggregation)
    ll = read(model)
    frames = clusters(3)
    out = ll.evaluate(frames, batch_size=2)
    own = model_outputs(model, frames)
    np.testing.assert_allclose(out["energy"], own["energy"], rtol=1e-13)
    np.testing.assert_allclose(out["forces"], own["forces"], rtol=0, atol=1e-13 * np.abs(own["forces"]).max())
    np.testing.assert_allclose(out["phi"], ll.features(frames)[0], rtol=0, atol=1e-14)


def test_an_averaging_models_lpr_does_not_depend_on_the_size_of_the_structure():
    from rigidity.last_layer import LLPR

    ll = read(small_model("avg"))
    with pytest.raises(ValueError, match="per atom already"):
        LLPR(ll, per_atom_energy=True)
    llpr = LLPR(ll, regularizer=1e-6, force_weight=1.0).fit(clusters(4, seed=5))
    one = clusters(1, seed=7)[0]
    two = one.copy()
    far = one.copy()
    far.positions += 50.0  # beyond the cutoff: the same environments, twice as many atoms
    two += far
    lpr_one, _ = llpr.lpr([one])
    lpr_two, _ = llpr.lpr([two])
    np.testing.assert_allclose(lpr_two, np.concatenate([lpr_one, lpr_one]), rtol=1e-8)


def test_command_line_takes_the_elements_the_model_knows_from_the_training_set(tmp_path, capsys):
    from ase.io import write

    from rigidity.last_layer.cli import main

    torch.save(small_model(), tmp_path / "painn.pt")
    train = clusters(4, seed=5)
    for atoms in train:
        atoms.info["energy"] = 0.0
    write(tmp_path / "train.xyz", train)
    fluorine = clusters(1, seed=6)
    fluorine[0].numbers[0] = 9
    write(tmp_path / "f.xyz", fluorine)
    argv = ["--model", str(tmp_path / "painn.pt"), "--train", str(tmp_path / "train.xyz"),
            "--structures", str(tmp_path / "f.xyz"), "--output", str(tmp_path / "out.xyz"), "--quiet"]
    assert main(argv) == 2
    assert "has elements ['F'] the model does not know (it knows ['H', 'O'])" in capsys.readouterr().err
    assert not (tmp_path / "out.xyz").exists()
    argv[5] = str(tmp_path / "train.xyz")
    assert main(argv) == 0 and "PaiNNLastLayer" in capsys.readouterr().out
