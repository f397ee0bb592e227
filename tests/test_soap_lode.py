"""SOAP+LODE descriptor (Fig 7): range separation, invariances, layout and input errors.

The splines of featomic's radial integrals cost seconds; they are cached per process,
and the real-space one uses a 1e-4 spline accuracy here (LR features change by < 3e-6).
"""

import numpy as np
import pytest
from ase import Atoms

from rigidity.descriptors.soap_lode import LR_BLOCKS, VARIANTS, SoapLode, box_structure

pytest.importorskip("featomic")

#: one water molecule, O first (A)
WATER = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])


def rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def dimer(distance, direction=(1.0, 0.3, -0.2), seed=3):
    """Two waters, the second rotated and its O at ``distance`` (A) from the first O along ``direction``."""
    R = rotation(np.random.default_rng(seed))
    u = np.asarray(direction) / np.linalg.norm(direction)
    return Atoms("OH2OH2", positions=np.vstack([WATER, WATER @ R.T + distance * u]))


@pytest.fixture(scope="module")
def desc():
    return SoapLode(real_space_spline_accuracy=1e-4)


def test_feature_counts_match_the_paper(desc):
    assert (desc.n_sr, desc.n_lr, desc.n_features) == (384, 512, 896)
    assert desc.blocks == {"SR": slice(0, 384), "LR": slice(384, 896)}
    names = desc.feature_names()
    assert len(names) == 896 and len(set(names)) == 896
    assert names[0].startswith("SR z=1 a=1 b=1 l=0") and names[384].startswith("LR z=1 a=1 b=1 l=0")
    f = desc.compute([dimer(3.5), Atoms("OH2", positions=WATER)])
    for variant in VARIANTS:
        x = f[variant]
        assert x.values.shape == (9, 896) and x.structure.tolist() == [0] * 6 + [1] * 3
        X = x.structure_sums()
        np.testing.assert_allclose(X[1], x.values[6:].sum(0))
        # per-centre-species slots: an O atom has zeros in the H slots and vice versa
        assert not x.values[0, :192].any() and not x.values[1, 192:384].any()
        assert not x.values[0, 384:640].any() and not x.values[1, 640:].any()


def test_sr_block_is_featomics_soap_power_spectrum(desc):
    import featomic

    frames = [dimer(3.2), dimer(6.0, seed=4)]
    ours = desc.compute(frames, ["non_orthogonal"])["non_orthogonal"].values[:, desc.blocks["SR"]]
    cutoff = featomic.cutoff.Cutoff(radius=2.8, smoothing=featomic.cutoff.ShiftedCosine(width=0.25))
    basis = featomic.basis.TensorProduct(max_angular=3, radial=featomic.basis.Gto(max_radial=3, radius=2.8))
    ps = featomic.SoapPowerSpectrum(cutoff=cutoff, density=featomic.density.Gaussian(width=0.3), basis=basis)
    tm = ps.compute(desc.check_frames(frames))
    expected = np.zeros_like(ours)
    for i, (system, atom) in enumerate([(s, a) for s in range(2) for a in range(6)]):
        z = int(frames[system].numbers[atom])
        slot = desc.species.index(z)
        for k, (a, b) in enumerate(desc.pairs):
            key = {"center_type": z, "neighbor_1_type": a, "neighbor_2_type": b}
            if key_present(tm, key):
                block = tm.block(key)
                row = np.flatnonzero((block.samples.column("system") == system)
                                     & (block.samples.column("atom") == atom))
                if row.size:
                    expected[i, slot * 192 + k * 64: slot * 192 + (k + 1) * 64] = block.values[row[0]]
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lr_block_is_the_power_spectrum_of_featomics_lode_coefficients(desc, variant):
    """LODE x LODE == featomic's DensityCorrelations (lambda = 0) of the LODE expansion, as the paper built it."""
    from featomic.clebsch_gordan import DensityCorrelations
    from metatensor import Labels

    frames = [dimer(3.3), dimer(7.0, seed=5)]
    raw = SoapLode(real_space_spline_accuracy=1e-4, background_correction=False)
    ours = raw.compute(frames, [variant])[variant].values[:, raw.blocks["LR"]]
    boxed = raw.check_frames(frames)
    lode = raw.lode_calculator().compute(boxed)
    if variant == "range_separated":
        lode = difference(lode, raw.real_space_lode_calculator().compute(boxed))
    ps = DensityCorrelations(n_correlations=1, max_angular=2 * raw.max_angular).compute(
        lode.keys_to_properties("neighbor_type"), selected_keys=Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1]])))
    expected = np.zeros_like(ours)
    S, L, N = len(raw.species), raw.max_angular + 1, raw.lode_n_radial
    for key, block in ps.items():
        z, l = int(key["center_type"]), int(key["l_1"])
        assert int(key["l_2"]) == l
        rows = np.asarray(block.samples.column("system")) * 6 + np.asarray(block.samples.column("atom"))
        for k, (a, n1, b, n2) in enumerate(np.asarray(block.properties.values)):
            col = (((raw.species.index(z) * S + raw.species.index(a)) * S + raw.species.index(b)) * L + l) * N * N
            expected[rows, col + n1 * N + n2] = np.asarray(block.values)[:, 0, k]
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def difference(a, b):
    """a - b of two featomic expansions, block by block and sample by sample, in numpy.

    (``TensorMap.__sub__`` dispatches to metatensor-torch once that is imported, and then
    refuses numpy-backed maps.)
    """
    from metatensor import TensorBlock, TensorMap

    blocks = []
    for key, block in a.items():
        values = np.array(block.values)
        if key in b.keys:
            other = b.block(key)
            assert other.properties == block.properties
            for j, sample in enumerate(other.samples):
                values[block.samples.position(sample)] -= np.asarray(other.values)[j]
        blocks.append(TensorBlock(values, block.samples, block.components, block.properties))
    return TensorMap(a.keys, blocks)


def test_density_lode_block_is_kept_as_an_option():
    frames = [dimer(3.5)]
    mixed = SoapLode(lr_block="density_lode", real_space_spline_accuracy=1e-4)
    assert mixed.n_lr == 512 and mixed.hypers()["lr_block"] == "density_lode"
    f = mixed.compute(frames, ["non_orthogonal"])["non_orthogonal"].values
    c = mixed.density_expansion(frames)
    V = mixed.lode_expansion(frames)
    # O atom 0, l = 1, a = O, b = H, n1 = 2, n2 = 3: -1/sqrt(3) sum_m c^O_{2 1 m} V^H_{3 1 m}
    o, h = mixed.species.index(8), mixed.species.index(1)
    col = mixed.n_sr + (((o * 2 + o) * 2 + h) * 4 + 1) * 16 + 2 * 4 + 3
    np.testing.assert_allclose(f[0, col], -np.dot(c[1][0, o, :, 2], V[1][0, h, :, 3]) / np.sqrt(3), rtol=1e-12)
    with pytest.raises(ValueError, match="lr_block must be one of"):
        SoapLode(lr_block="soap_lode")
    assert set(LR_BLOCKS) == {"lode_lode", "density_lode"}


def key_present(tm, key):
    return any(all(int(k[n]) == v for n, v in key.items()) for k in tm.keys)


def test_range_separated_lr_decays_as_the_other_molecule_leaves(desc):
    distances = [4.0, 6.0, 8.0, 10.0, 15.0]
    f = desc.compute([dimer(d) for d in distances])
    lr = desc.blocks["LR"]
    first = np.arange(len(distances))[:, None] * 6 + np.arange(3)  # atoms of the first molecule
    rs = np.linalg.norm(f["range_separated"].values[first][..., lr], axis=(1, 2))
    no = np.linalg.norm(f["non_orthogonal"].values[first][..., lr], axis=(1, 2))
    assert np.all(np.diff(rs) < 0), rs
    assert rs[-1] < 0.05 * rs[0]  # about (4/15)^3 of a 1/r^3 potential, plus periodic images
    assert rs[-1] < 0.02 * no[-1]  # the non-orthogonal block keeps the molecule's own potential
    # an isolated molecule: nothing beyond the SR sphere, LR is the k-space truncation residual only
    mono = desc.compute([Atoms("OH2", positions=WATER)])
    assert np.abs(mono["range_separated"].values[:, lr]).max() < 1e-3
    assert np.abs(mono["non_orthogonal"].values[:, lr]).max() > 1.0


@pytest.mark.parametrize("k_cutoff, tol", [(2 * np.pi, 3e-5), (np.pi, 5e-4)])
def test_range_separation_removes_exactly_the_atoms_within_the_cutoff(k_cutoff, tol):
    """V_rs(i) of the full system == reciprocal-space V(i) of the system without the atoms within r_c of i.

    Removing atoms by hand (and the centre's own potential: weight 0) is an independent route
    to what the real-space subtraction does. They differ by (1) the reciprocal-space truncation
    error of the removed atoms' potential, which the exact real-space subtraction does not
    share: ~1e-4 at the paper's k_cutoff = pi, ~1e-5 at 2 pi, on coefficients of order 1; and
    (2) the removed atoms' periodic images (relative to an atom's own, which the background
    correction takes out), ~(r/L)^2 phi(L) ~ 1e-6 at L = 40 A. Hence the tolerances.
    """
    desc = SoapLode(real_space_spline_accuracy=1e-4, k_cutoff=k_cutoff)
    full = dimer(3.0)  # the second molecule's H within 2.8 A of the first O
    V_rs = desc.potential_expansion([full], "range_separated")
    V_no = desc.potential_expansion([full], "non_orthogonal")
    d = full.get_all_distances()
    for i in range(len(full)):
        far = np.flatnonzero(d[i] >= desc.cutoff)
        reduced = full[[i, *far]]
        V_red = desc.lode_expansion([reduced], center_atom_weight=0.0)
        for l in range(desc.max_angular + 1):
            np.testing.assert_allclose(V_rs[l][i], V_red[l][0], rtol=0, atol=tol, err_msg=f"atom {i}, l = {l}")
        # the test is not vacuous: the removed atoms carry most of the potential
        assert np.abs(V_no[0][i] - V_rs[0][i]).max() > 100 * tol


def test_centre_contribution_matches_the_real_space_projection(desc):
    """featomic's LODE centre term, once orthonormalised, is the real-space self-projection."""
    atom = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    with_centre = desc.lode_expansion([atom], center_atom_weight=1.0)[0][0, 1, 0]  # O-O block, l = 0
    without = desc.lode_expansion([atom], center_atom_weight=0.0)[0][0, 1, 0]
    boxed = desc.check_frames([atom])
    self_term = desc.real_space_lode_calculator().compute(boxed).block(0).values[0, 0]
    np.testing.assert_allclose(with_centre - without, self_term, rtol=1e-4)


def test_background_correction_makes_the_box_edge_irrelevant():
    mono = [Atoms("OH2", positions=WATER)]
    small, large = (SoapLode(box_edge=e, real_space_spline_accuracy=1e-4) for e in (20.0, 40.0))
    diff = max(np.abs(a - b).max() for a, b in zip(small.lode_expansion(mono), large.lode_expansion(mono)))
    assert diff < 5e-4
    raw_small, raw_large = (SoapLode(box_edge=e, background_correction=False, real_space_spline_accuracy=1e-4)
                            for e in (20.0, 40.0))
    raw = max(np.abs(a - b).max() for a, b in zip(raw_small.lode_expansion(mono), raw_large.lode_expansion(mono)))
    assert raw > 20 * diff  # the k = 0 offset, ~ln(L)/L^3 per atom


def test_rotation_and_permutation_invariance(desc, rng):
    base = dimer(3.4)
    R = rotation(rng)
    rotated = Atoms(base.numbers, positions=(base.positions - base.positions.mean(0)) @ R.T + 1.7)
    perm = np.array([3, 5, 4, 0, 2, 1])  # swap the molecules and the H atoms within each
    permuted = base[perm]
    f = desc.compute([base, rotated, permuted])
    for variant in VARIANTS:
        x = f[variant].values
        sr, lr = desc.blocks["SR"], desc.blocks["LR"]
        np.testing.assert_allclose(x[6:12, sr], x[:6, sr], rtol=0, atol=1e-10)
        # LR: the periodic images sit on a cubic lattice that does not rotate with the molecule,
        # and the k-space sum is truncated on that lattice: invariant only up to ~1e-6 (measured)
        # of values of order 1 in a 40 A box
        np.testing.assert_allclose(x[6:12, lr], x[:6, lr], rtol=0, atol=1e-5)
        np.testing.assert_allclose(x[12:18], x[:6][perm], rtol=0, atol=1e-10)


def test_box_is_centred_and_checked():
    boxed = box_structure(dimer(5.0), 30.0, margin=2.8)
    assert boxed.pbc.all() and np.allclose(boxed.cell, 30 * np.eye(3))
    lo, hi = boxed.positions.min(0), boxed.positions.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 15.0)
    with pytest.raises(ValueError, match="too small"):
        box_structure(dimer(10.0), 12.0, margin=2.8)


def test_bad_input_is_refused_with_a_clear_message(desc):
    with pytest.raises(ValueError, match=r"atomic numbers \[6\] outside"):
        desc.compute([Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]])])
    with pytest.raises(ValueError, match="structure 1: box_edge = 8.0 A is too small"):
        SoapLode(box_edge=8.0, real_space_spline_accuracy=1e-4).compute([Atoms("OH2", positions=WATER), dimer(6.0)])
    periodic = Atoms("OH2", positions=WATER, cell=[10, 10, 10], pbc=True)
    with pytest.raises(ValueError, match="periodic"):
        desc.compute([periodic])
    with pytest.raises(ValueError, match="unknown variants"):
        desc.compute([Atoms("OH2", positions=WATER)], ["orthogonal"])
    with pytest.raises(ValueError, match="no structures"):
        desc.compute([])
    for kwargs, match in [
        (dict(atomic_gaussian_width=0.0), "atomic_gaussian_width"),
        (dict(lode_smearing=-1.2), "lode_smearing"),
        (dict(cutoff=-2.8), "cutoff"),
        (dict(cutoff_width=3.0), "cutoff_width"),
        (dict(k_cutoff=float("nan")), "k_cutoff"),
        (dict(box_edge=0), "box_edge"),
        (dict(n_radial=0), "n_radial"),
        (dict(lode_exponent=2.5), "lode_exponent"),
    ]:
        with pytest.raises(ValueError, match=match):
            SoapLode(**kwargs)
    with pytest.raises(ValueError, match="species"):
        SoapLode(species=[1, 1])
