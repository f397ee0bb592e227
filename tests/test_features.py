"""Energy, force and stress rows against finite differences of a linear model's energy."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the finite differences of these tests run through torch autograd")

from rigidity import VOIGT, force_rows, loss_rows, stress_rows, structure_features  # noqa: E402

R_CUT = 3.0
CENTRES = torch.linspace(0.8, 2.8, 5, dtype=torch.float64)


def toy_features(positions, cell):
    """Per-atom features (n, 10) of a periodic structure: 5 radial two-body channels and
    5 many-body channels |sum_k e_m(r_jk) u_jk|^2, smooth at the cutoff."""
    d = positions[None, :, :] - positions[:, None, :]
    frac = d @ torch.linalg.inv(cell)
    frac = frac - torch.round(frac.detach())  # minimum image (cell side > 2 r_cut)
    d = frac @ cell
    n = positions.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    r = torch.sqrt((d**2).sum(-1) + torch.eye(n, dtype=d.dtype))  # no sqrt(0) on the diagonal
    fc = torch.where(r < R_CUT, 0.5 * (torch.cos(torch.pi * r / R_CUT) + 1) ** 2, torch.zeros_like(r)) * off
    e = torch.exp(-((r[..., None] - CENTRES) ** 2) / 0.3) * fc[..., None]  # (n, n, 5)
    two_body = e.sum(1)
    u = d / r[..., None]
    vec = torch.einsum("jkm,jka->jma", e, u)
    many_body = (vec**2).sum(-1)
    return torch.cat([two_body, many_body], dim=1)


@pytest.fixture
def structure(rng):
    cell = torch.tensor(np.diag([6.5, 7.0, 6.8]) + rng.normal(scale=0.2, size=(3, 3)))
    pos = torch.tensor(rng.uniform(0, 1, size=(9, 3))) @ cell
    return pos, cell


def energy(pos, cell, w, eps=None):
    if eps is not None:
        strain = torch.eye(3, dtype=pos.dtype) + eps
        pos, cell = pos @ strain.T, cell @ strain.T
    return float(toy_features(pos, cell).sum(0) @ w)


def test_force_rows_match_finite_differences(structure, rng):
    pos, cell = structure
    n = len(pos)
    w = torch.tensor(rng.normal(size=10))
    # d phi_j / d r_k for every pair, by autograd, in featomic's sparse layout
    jac = torch.autograd.functional.jacobian(lambda p: toy_features(p, cell), pos)  # (n, 10, n, 3)
    grads = jac.permute(0, 2, 3, 1).reshape(n * n, 3, 10)  # pair (j, k) -> (3, d)
    k_index = np.tile(np.arange(n), n)
    rows = force_rows(grads.numpy(), k_index, n)
    assert rows.shape == (3 * n, 10)
    h = 1e-5
    fd = np.zeros((n, 3))
    for k in range(n):
        for a in range(3):
            dp = torch.zeros_like(pos)
            dp[k, a] = h
            fd[k, a] = -(energy(pos + dp, cell, w) - energy(pos - dp, cell, w)) / (2 * h)
    np.testing.assert_allclose(rows @ w.numpy(), fd.reshape(-1), rtol=1e-6, atol=1e-8)
    # the torch path gives the same rows
    np.testing.assert_allclose(force_rows(grads, torch.tensor(k_index), n).numpy(), rows, rtol=1e-14)


def test_stress_rows_match_finite_differences(structure, rng):
    pos, cell = structure
    w = torch.tensor(rng.normal(size=10))
    eps0 = torch.zeros(3, 3, dtype=torch.float64)

    def summed(eps):
        strain = torch.eye(3, dtype=torch.float64) + eps
        return toy_features(pos @ strain.T, cell @ strain.T).sum(0)

    sg = torch.autograd.functional.jacobian(summed, eps0).permute(1, 2, 0)  # (3, 3, d)
    volume = abs(float(torch.linalg.det(cell)))
    rows6 = stress_rows(sg[None].numpy(), [volume])
    rows9 = stress_rows(sg[None].numpy(), [volume], voigt=False)
    h = 1e-5
    fd = []
    for a, b in VOIGT:
        e = torch.zeros(3, 3, dtype=torch.float64)
        e[a, b] += h / 2
        e[b, a] += h / 2
        fd.append((energy(pos, cell, w, e) - energy(pos, cell, w, -e)) / (2 * h) / volume)
    np.testing.assert_allclose(rows6 @ w.numpy(), fd, rtol=1e-6, atol=1e-9)
    s9 = (rows9 @ w.numpy()).reshape(3, 3)
    np.testing.assert_allclose([(s9[a, b] + s9[b, a]) / 2 for a, b in VOIGT], fd, rtol=1e-6, atol=1e-9)


def test_structure_features_sum_and_mean(rng):
    phi = rng.normal(size=(12, 4))
    index = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3])
    s = structure_features(phi, index)
    m = structure_features(phi, index, reduce="mean")
    for i in range(4):
        np.testing.assert_allclose(s[i], phi[index == i].sum(0), rtol=1e-14)
        np.testing.assert_allclose(m[i], phi[index == i].mean(0), rtol=1e-14)
    st = structure_features(torch.tensor(phi), torch.tensor(index), reduce="mean")
    assert isinstance(st, torch.Tensor)
    np.testing.assert_allclose(st.numpy(), m, rtol=1e-14)
    assert structure_features(phi, index, n_structures=6).shape == (6, 4)


def test_feature_helpers_refuse_bad_input(rng):
    phi = rng.normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"structure_index of shape \(4,\) does not match the 5 rows"):
        structure_features(phi, [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"structures \[1\] have no atoms"):
        structure_features(phi, [0, 0, 2, 2, 2], reduce="mean")
    with pytest.raises(ValueError, match="reduce"):
        structure_features(phi, [0] * 5, reduce="max")
    with pytest.raises(ValueError, match=r"must be \(n_pairs, 3, d\)"):
        force_rows(rng.normal(size=(4, 2, 3)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="volumes must be finite and > 0"):
        stress_rows(rng.normal(size=(2, 3, 3, 4)), [1.0, -2.0])
    with pytest.raises(ValueError, match="different feature counts"):
        loss_rows(energy=np.ones((2, 3)), forces=np.ones((6, 4)))


def test_loss_rows_weights(rng):
    E, F, S = rng.normal(size=(2, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    G, w = loss_rows(energy=E, forces=F, stress=S, lambda_energy=2.0, lambda_forces=0.5, lambda_stress=0.1)
    np.testing.assert_array_equal(G, np.vstack([E, F, S]))
    H = G.T @ (w[:, None] * G)
    np.testing.assert_allclose(H, 2.0 * E.T @ E + 0.5 * F.T @ F + 0.1 * S.T @ S, rtol=1e-13)
