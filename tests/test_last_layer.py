"""Last-layer adapters (rigidity.last_layer): energies rebuilt from phi . w + constants, force rows against
finite differences and against the model's own forces, per-layer blocks against the model's contributions."""

from functools import cache

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("torch")
pytest.importorskip("mace")

import torch  # noqa: E402

from rigidity.last_layer import LastLayer, MACELastLayer  # noqa: E402


@cache
def small_mace(scale_shift=True, seed=0, zbl=False):
    """A 2-layer MACE on H and O built with mace's own constructors (float64, random weights)."""
    from e3nn import o3
    from mace import modules
    from mace.modules import gate_dict, interaction_classes

    torch.manual_seed(seed)
    kwargs = dict(
        r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=2, hidden_irreps=o3.Irreps("16x0e+16x1o"), MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.array([-13.6, -2040.0]), avg_num_neighbors=3.0, atomic_numbers=[1, 8],
        correlation=2, gate=gate_dict["silu"], pair_repulsion=zbl,
    )
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            if scale_shift:
                return modules.ScaleShiftMACE(atomic_inter_scale=1.7, atomic_inter_shift=-0.3, **kwargs)
            return modules.MACE(**kwargs)
        finally:
            torch.set_default_dtype(torch.float32)


def clusters(n=5, seed=1):
    rng = np.random.default_rng(seed)
    return [Atoms(numbers=rng.choice([1, 8], size=3 + k), positions=rng.uniform(0, 3.0, size=(3 + k, 3)))
            for k in range(n)]


def model_outputs(model, frames, forces=False):
    """The model's own energies, forces and per-layer contributions, through mace's calculator path."""
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools, utils

    z = utils.AtomicNumberTable([1, 8])
    with torch_tools.default_dtype(torch.float64):
        graphs = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=z, cutoff=4.0)
                  for a in frames]
    batch = next(iter(torch_geometric.dataloader.DataLoader(graphs, batch_size=len(frames), shuffle=False)))
    out = model(batch.to_dict(), training=False, compute_force=forces)
    return {k: v.detach().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("scale_shift, zbl", [(True, False), (False, False), (True, True)])
def test_energy_is_phi_dot_weights_plus_constants(scale_shift, zbl):
    model = small_mace(scale_shift, zbl=zbl)
    ll = MACELastLayer(model)
    assert isinstance(ll, LastLayer)
    assert ll.n_features == 16 + 8 and ll.blocks == {"layer0": slice(0, 16), "layer1": slice(16, 24)}
    frames = clusters()
    phi, structure = ll.features(frames, batch_size=2)
    assert phi.shape == (sum(len(a) for a in frames), 24)
    assert structure.tolist() == [k for k, a in enumerate(frames) for _ in a]
    rebuilt, own = ll.energies(frames, batch_size=3)
    np.testing.assert_allclose(own, model_outputs(model, frames)["energy"], rtol=1e-13)
    e0 = np.array([sum(-13.6 if z == 1 else -2040.0 for z in a.numbers) for a in frames])
    # the interaction energy (without the large E0) is rebuilt to rounding
    np.testing.assert_allclose(rebuilt - e0, own - e0, rtol=1e-10, atol=1e-12)
    assert np.abs(own - e0).min() > 1e-3  # a non-trivial interaction energy
    # batching does not change the features
    np.testing.assert_allclose(ll.features(frames, batch_size=1)[0], phi, rtol=0, atol=1e-13)


def test_blocks_are_the_energy_contributions_of_each_layer():
    model = small_mace(scale_shift=False)
    ll = MACELastLayer(model)
    frames = clusters()
    phi, structure = ll.features(frames)
    contributions = model_outputs(model, frames)["contributions"]  # e0, pair, layer 0, layer 1
    for t, block in enumerate(ll.blocks.values()):
        per_structure = np.bincount(structure, weights=phi[:, block] @ ll.weights[block])
        np.testing.assert_allclose(per_structure, contributions[:, 2 + t], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduce, mode", [("sum", "reverse"), ("mean", "reverse"), ("sum", "forward")])
def test_force_rows_are_minus_the_derivatives_of_the_structure_features(reduce, mode):
    ll = MACELastLayer(small_mace())
    frames = clusters(3)
    rows, structure = ll.force_rows(frames, reduce=reduce, batch_size=3, mode=mode)
    assert rows.shape == (3 * sum(len(a) for a in frames), ll.n_features)
    h = 1e-5
    for s, atoms in enumerate(frames):
        fd = []
        for a in range(len(atoms)):
            for x in range(3):
                plus, minus = atoms.copy(), atoms.copy()
                plus.positions[a, x] += h
                minus.positions[a, x] -= h
                reduce_fn = np.sum if reduce == "sum" else np.mean
                fd.append(-(reduce_fn(ll.features([plus])[0], axis=0) - reduce_fn(ll.features([minus])[0], axis=0))
                          / (2 * h))
        np.testing.assert_allclose(rows[structure == s], np.array(fd), rtol=0, atol=1e-5 * np.abs(fd).max())


def test_force_rows_times_weights_are_the_models_forces():
    model = small_mace()
    ll = MACELastLayer(model)
    frames = clusters(4)
    rows, _ = ll.force_rows(frames, batch_size=2)
    forces = model_outputs(model, frames, forces=True)["forces"]
    np.testing.assert_allclose(rows @ ll.weights, forces.reshape(-1), rtol=1e-9, atol=1e-10 * np.abs(forces).max())


def test_forward_and_reverse_modes_agree_on_mixed_sizes():
    ll = MACELastLayer(small_mace())
    frames = clusters(5)  # 3 to 7 atoms: the forward tangents of the smaller structures fall off their end
    reverse, _ = ll.force_rows(frames, batch_size=5, mode="reverse")
    forward, _ = ll.force_rows(frames, batch_size=5, mode="forward")
    np.testing.assert_allclose(forward, reverse, rtol=0, atol=1e-11 * np.abs(reverse).max())


def periodic_boxes(n=2, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cell = np.diag(rng.uniform(4.5, 5.5, size=3)) + rng.uniform(-0.3, 0.3, size=(3, 3))
        atoms = Atoms(numbers=rng.choice([1, 8], size=6), cell=cell, pbc=True)
        atoms.set_scaled_positions(rng.uniform(size=(6, 3)))
        out.append(atoms)
    return out


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_stress_rows_are_strain_derivatives_and_give_the_models_stress(mode):
    model = small_mace()
    ll = MACELastLayer(model)
    frames = periodic_boxes()
    out = ll.compute(frames, forces=True, stress=True, batch_size=2, mode=mode)
    rows = out["stress_rows"]
    assert rows.shape == (6 * len(frames), ll.n_features)
    # finite differences of the summed features under a symmetric strain of positions and cell
    h = 1e-5
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for s, atoms in enumerate(frames):
        fd = []
        for a, b in voigt:
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = 0.5 * h if a != b else h
            plus, minus = atoms.copy(), atoms.copy()
            for sign, strained in ((1, plus), (-1, minus)):
                strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=False)
                strained.positions = atoms.positions @ (np.eye(3) + sign * eps)
            fd.append((ll.features([plus])[0].sum(0) - ll.features([minus])[0].sum(0)) / (2 * h) / atoms.get_volume())
        fd = np.array(fd)
        np.testing.assert_allclose(rows[6 * s:6 * s + 6], fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    # against the model's own stress (ASE's Voigt order from mace's 3 x 3 tensor)
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools, utils

    z = utils.AtomicNumberTable([1, 8])
    with torch_tools.default_dtype(torch.float64):
        graphs = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=z, cutoff=4.0)
                  for a in frames]
    batch = next(iter(torch_geometric.dataloader.DataLoader(graphs, batch_size=len(frames), shuffle=False)))
    stress = model(batch.to_dict(), training=False, compute_force=True, compute_stress=True)["stress"]
    stress = stress.detach().numpy()[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    np.testing.assert_allclose(rows @ ll.weights, stress.reshape(-1), rtol=0, atol=1e-9 * np.abs(stress).max())
    with pytest.raises(ValueError, match="not periodic"):
        ll.stress_rows(clusters(1))


def test_bad_input_is_named():
    ll = MACELastLayer(small_mace())
    with pytest.raises(ValueError, match=r"atomic numbers \[6\] the model does not know"):
        ll.features([Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]])])
    with pytest.raises(ValueError, match="no structures"):
        ll.features([])
    with pytest.raises(ValueError, match="structure 1 is a str"):
        ll.features([clusters(1)[0], "H2O"])
    with pytest.raises(ValueError, match="reduce must be one of"):
        ll.force_rows(clusters(1), reduce="max")
    with pytest.raises(ValueError, match="batch_size"):
        ll.features(clusters(1), batch_size=0)
    with pytest.raises(TypeError, match="expected a mace-torch MACE model"):
        MACELastLayer(torch.nn.Linear(3, 1))


@pytest.mark.parametrize("zbl", [False, True])
def test_evaluate_gives_the_models_energies_and_forces(zbl):
    model = small_mace(zbl=zbl)
    ll = MACELastLayer(model)
    frames = clusters(3)
    own = model_outputs(model, frames, forces=True)
    fast = ll.evaluate(frames, batch_size=2)
    np.testing.assert_allclose(fast["energy"], own["energy"], rtol=1e-13)
    np.testing.assert_allclose(fast["forces"], own["forces"], rtol=0, atol=1e-12 * np.abs(own["forces"]).max())
    np.testing.assert_allclose(fast["phi"], ll.features(frames)[0], rtol=0, atol=1e-13)
    # the generic route: rows . w plus the forces of position-dependent constants (ZBL)
    generic = LastLayer.evaluate(ll, frames)
    np.testing.assert_allclose(generic["forces"], own["forces"], rtol=0, atol=1e-9 * np.abs(own["forces"]).max())
    assert ("constant_forces" in ll.compute(frames, forces=True)) == zbl
