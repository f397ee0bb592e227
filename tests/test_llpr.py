"""LLPR (rigidity.last_layer): the Hessian over a training set against one built by hand from finite-difference
rows, Huber weights, Appendix B, calibration, CPR per layer, save/load, and the live ASE calculator."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mace")

import torch  # noqa: E402
from test_last_layer import clusters, small_mace  # noqa: E402

from rigidity import Hessian  # noqa: E402
from rigidity.last_layer import LLPR, MACELastLayer, RigidityCalculator  # noqa: E402


def labelled(frames, ll, noise=0.05, seed=0):
    """Copies with reference energies and forces: the model's plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = ll.evaluate(frames)
    labelled = []
    for s, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.info["energy"] = float(out["energy"][s]) + noise * rng.normal()
        atoms.arrays["forces"] = out["forces"][out["structure"] == s] + noise * rng.normal(size=(len(atoms), 3))
        labelled.append(atoms)
    return labelled


def fd_rows(ll, atoms, h=1e-5):
    """Force rows -d(sum phi)/dr by central finite differences: independent of autograd."""
    rows = []
    for a in range(len(atoms)):
        for x in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, x] += h
            minus.positions[a, x] -= h
            rows.append(-(ll.features([plus])[0].sum(0) - ll.features([minus])[0].sum(0)) / (2 * h))
    return np.array(rows)


@pytest.fixture(scope="module")
def ll():
    return MACELastLayer(small_mace())


@pytest.mark.parametrize("per_atom", [False, True])
def test_hessian_pr_and_lpr_against_a_hand_built_hessian(ll, per_atom):
    train = clusters(4, seed=5)
    sigma2, lam_e, lam_f = 1e-4, 2.0, 10.0
    llpr = LLPR(ll, regularizer=sigma2, energy_weight=lam_e, force_weight=lam_f, per_atom_energy=per_atom)
    llpr.fit(train[:2]).fit(train[2:])  # in two calls: H accumulates
    H = sigma2 * np.eye(ll.n_features)
    for atoms in train:
        phi = ll.features([atoms])[0]
        g = phi.mean(0) if per_atom else phi.sum(0)
        H += lam_e * np.outer(g, g) + lam_f * fd_rows(ll, atoms).T @ fd_rows(ll, atoms)
    np.testing.assert_allclose(llpr.hessian.matrix, H, rtol=1e-6, atol=1e-8 * np.abs(H).max())
    test = clusters(3, seed=9)
    p = llpr.predict(test)
    Hinv = np.linalg.inv(H)
    for s, atoms in enumerate(test):
        phi = ll.features([atoms])[0]
        g = phi.sum(0)
        np.testing.assert_allclose(p["pr"][s], 1 / (g @ Hinv @ g), rtol=1e-5)
        np.testing.assert_allclose(p["lpr"][p["structure"] == s], 1 / np.einsum("id,de,ie->i", phi, Hinv, phi),
                                   rtol=1e-5)
    assert llpr.n_train == 4


def test_huber_weights_drop_the_rows_outside_delta(ll):
    frames = labelled(clusters(4, seed=2), ll, noise=0.0)
    own = ll.evaluate(frames)
    # push the reference energy of structures 1 and 3 beyond delta, and one force component of structure 0
    frames[1].info["energy"] += 0.5
    frames[3].info["energy"] -= 0.02
    frames[0].arrays["forces"][1, 2] += 1.0
    delta = 0.01
    huber = LLPR(ll, regularizer=1e-6, force_weight=3.0, loss="huber", huber_delta=delta).fit(frames)
    rows = ll.compute(frames, forces=True)["force_rows"]
    Phi = np.stack([own["phi"][own["structure"] == s].sum(0) for s in range(4)])
    keep_f = np.ones(len(rows), bool)
    keep_f[3 * 1 + 2] = False  # atom 1, z, of structure 0 (its atoms come first)
    H = 1e-6 * np.eye(ll.n_features) + Phi[[0, 2]].T @ Phi[[0, 2]] + 3.0 * rows[keep_f].T @ rows[keep_f]
    np.testing.assert_allclose(huber.hessian.matrix, H, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    with pytest.raises(ValueError, match="no reference energy"):
        LLPR(ll, loss="huber").fit(clusters(2))


def test_adding_a_structure_raises_its_pr_by_its_weight(ll):
    llpr = LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(clusters(3, seed=4))
    new = clusters(2, seed=11)
    before = llpr.pr(new)
    for weight in (1.0, 2.5):
        after = np.array([llpr.with_added([atoms], weight=weight).pr([atoms])[0] for atoms in new])
        np.testing.assert_allclose(after - before, weight, rtol=1e-6)
    # the original is untouched
    np.testing.assert_allclose(llpr.pr(new), before, rtol=0)


def adapter(kind):
    """A small model of each architecture, built with its package's own constructors."""
    if kind == "mace":
        return MACELastLayer(small_mace()), clusters
    if kind == "painn":
        pytest.importorskip("schnetpack")
        from test_last_layer_painn import clusters as painn_clusters
        from test_last_layer_painn import read, small_model

        return read(small_model()), painn_clusters
    pytest.importorskip("metatrain")
    from test_last_layer_metatomic import _untrained, molecules

    from rigidity.last_layer import MetatomicLastLayer

    soap = {"max_radial": 2, "max_angular": 2, "cutoff": {"radius": 4.0, "width": 0.5}}
    model = _untrained("soap_bpnn", soap=soap, bpnn={"num_hidden_layers": 1, "num_neurons_per_layer": 8})
    return MetatomicLastLayer(model), molecules


@pytest.mark.parametrize("kind", ["mace", "painn", "metatomic"])
def test_every_adapter_appendix_b_and_numpy_torch_paths(kind):
    ll, make = adapter(kind)
    llpr = LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(make(3, seed=4))
    new = make(2, seed=11)
    before = llpr.pr(new)
    after = np.array([llpr.with_added([atoms], weight=2.0).pr([atoms])[0] for atoms in new])
    np.testing.assert_allclose(after - before, 2.0, rtol=1e-6)
    G, w = llpr.training_rows(make(3, seed=4))
    h_torch = Hessian(ll.n_features, regularizer=1e-5).add(torch.as_tensor(G), weights=torch.as_tensor(w))
    phi, structure = ll.features(new)
    Phi = np.stack([phi[structure == s].sum(0) for s in range(len(new))])
    np.testing.assert_allclose(h_torch.pr(torch.as_tensor(Phi)).numpy(), before, rtol=1e-9)
    np.testing.assert_allclose(h_torch.lpr(torch.as_tensor(phi)).numpy(), llpr.lpr(new)[0], rtol=1e-9)


def test_cpr_of_each_layer_and_numpy_torch_agree(ll):
    llpr = LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(clusters(3, seed=4))
    test = clusters(2, seed=12)
    cpr = llpr.cpr(test)
    assert set(cpr) == {"layer0", "layer1"}
    Hinv = np.linalg.inv(llpr.hessian.matrix)
    phi, structure = ll.features(test)
    for name, block in ll.blocks.items():
        for s in range(2):
            g = np.zeros(ll.n_features)
            g[block] = phi[structure == s][:, block].sum(0)
            np.testing.assert_allclose(cpr[name][s], 1 / (g @ Hinv @ g), rtol=1e-6)
    # the torch path of the core gives the same numbers
    G, w = llpr.training_rows(clusters(3, seed=4))
    h_torch = Hessian(ll.n_features, regularizer=1e-5).add(torch.as_tensor(G), weights=w)
    Phi = np.stack([phi[structure == s].sum(0) for s in range(2)])
    np.testing.assert_allclose(h_torch.pr(torch.as_tensor(Phi)).numpy(), llpr.pr(test), rtol=1e-9)


def test_calibration_maximises_the_likelihood_and_save_load_keeps_everything(ll, tmp_path):
    train, valid = clusters(4, seed=4), labelled(clusters(5, seed=21), ll, noise=0.1)
    llpr = LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(train)
    alpha = llpr.calibrate(valid)
    v = 1 / llpr.pr(valid)
    r = ll.energies(valid)[1] - np.array([a.info["energy"] for a in valid])

    def nll(a):
        return np.sum(np.log(a * v) + r**2 / (a * v))

    assert nll(alpha) < nll(0.9 * alpha) and nll(alpha) < nll(1.1 * alpha)
    np.testing.assert_allclose(llpr.energy_uncertainty(valid), np.sqrt(alpha * v), rtol=1e-12)
    alpha_f = llpr.calibrate(valid, target="forces")
    assert alpha_f > 0 and llpr.force_uncertainty(valid[:1]).shape == (len(valid[0]), 3)
    with pytest.raises(ValueError, match="at least 2 are needed to calibrate"):
        llpr.calibrate(valid[:1])

    path = llpr.save(tmp_path / "llpr.npz")
    back = LLPR.load(path, ll)
    np.testing.assert_allclose(back.pr(valid), llpr.pr(valid), rtol=1e-12)
    assert back.alpha == llpr.alpha and back.settings == llpr.settings and back.n_train == 4
    other = MACELastLayer(small_mace(seed=1))
    with pytest.raises(ValueError, match="written for another model: parameters_sha256, weights_sha256 differ"):
        LLPR.load(path, other)


def test_calculator_reports_lpr_of_every_atom_at_every_step_of_md(ll, tmp_path):
    from ase import units
    from ase.io import read, write
    from ase.md.langevin import Langevin

    llpr = LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(clusters(4, seed=4))
    llpr.calibrate(labelled(clusters(4, seed=30), ll))
    atoms = clusters(5, seed=31)[4].copy()  # 7 atoms
    atoms.calc = RigidityCalculator(llpr)
    traj = tmp_path / "md.xyz"
    dyn = Langevin(atoms, 0.2 * units.fs, temperature_K=300, friction=0.01, rng=np.random.default_rng(0))
    dyn.attach(lambda: write(traj, atoms, format="extxyz", append=True), interval=1)
    dyn.run(20)
    frames = read(traj, index=":")
    assert len(frames) == 21
    for frame in frames:
        assert frame.arrays["lpr"].shape == (len(atoms),) and np.all(frame.arrays["lpr"] > 0)
        lpr, _ = llpr.lpr([frame])
        np.testing.assert_allclose(frame.arrays["lpr"], lpr, rtol=1e-6)
        np.testing.assert_allclose(frame.info["pr"], llpr.pr([frame])[0], rtol=1e-6)
        assert frame.info["energy_uncertainty"] > 0
    # forces are the model's: the wrapper changes nothing in the dynamics
    np.testing.assert_allclose(atoms.get_forces(), ll.evaluate([atoms])["forces"], rtol=1e-12, atol=1e-12)
    assert set(atoms.calc.results) >= {"energy", "forces", "pr", "lpr", "energy_uncertainty"}


def test_mean_reduction_divides_each_term_by_its_row_count(ll):
    frames = periodic_boxes_for_stress()
    lam_e, lam_f, lam_s = 1.0, 100.0, 10.0
    mean = LLPR(ll, regularizer=1e-6, energy_weight=lam_e, force_weight=lam_f, stress_weight=lam_s,
                per_atom_energy=True, reduction="mean").fit(frames)
    out = ll.compute(frames, forces=True, stress=True)
    S, N = len(frames), sum(len(a) for a in frames)
    phi, structure = out["phi"], out["structure"]
    g = np.stack([phi[structure == s].mean(0) for s in range(S)])
    f, t = out["force_rows"], out["stress_rows"]
    # a loss over the 9 stress components counts each off-diagonal Voigt row twice
    multiplicity = np.tile([1, 1, 1, 2, 2, 2], S)
    H = (1e-6 * np.eye(ll.n_features) + lam_e / S * g.T @ g + lam_f / (3 * N) * f.T @ f
         + lam_s / (9 * S) * t.T @ (multiplicity[:, None] * t))
    np.testing.assert_allclose(mean.hessian.matrix, H, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    with pytest.raises(ValueError, match="give it to one fit"):
        mean.fit(frames)
    with pytest.raises(ValueError, match="Huber loss with stress_weight"):
        LLPR(ll, stress_weight=1.0, loss="huber")


def periodic_boxes_for_stress():
    from test_last_layer import periodic_boxes

    return periodic_boxes(3, seed=8)


def test_single_atom_structures_have_zero_force_rows(ll):
    from ase import Atoms

    frames = [Atoms("H", positions=[[0, 0, 0]]), Atoms("O", positions=[[1, 1, 1]])]
    for mode in ("auto", "forward", "reverse"):
        rows, _ = ll.force_rows(frames, mode=mode)
        assert rows.shape == (6, ll.n_features) and not rows.any()
    LLPR(ll, regularizer=1e-5, force_weight=1.0).fit(frames + clusters(2))


def test_calculator_takes_the_models_own_calculator_and_refuses_another_models(ll):
    from ase.calculators.calculator import Calculator, all_changes

    class Own(Calculator):
        implemented_properties = ["energy", "forces"]

        def __init__(self, adapter, factor=1.0):
            super().__init__()
            self.adapter, self.factor = adapter, factor

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            out = self.adapter.evaluate([atoms])
            self.results = {"energy": self.factor * float(out["energy"][0]), "forces": out["forces"]}

    llpr = LLPR(ll, regularizer=1e-5).fit(clusters(4, seed=4))
    atoms = clusters(3, seed=40)[2].copy()
    atoms.calc = RigidityCalculator(llpr, calculator=Own(ll))
    assert atoms.get_potential_energy() == pytest.approx(ll.energies([atoms])[1][0], rel=1e-12)
    np.testing.assert_allclose(atoms.calc.results["lpr"], llpr.lpr([atoms])[0], rtol=1e-12)
    atoms.calc = RigidityCalculator(llpr, calculator=Own(MACELastLayer(small_mace(seed=1))))
    with pytest.raises(ValueError, match="is it a calculator of another model"):
        atoms.get_potential_energy()
