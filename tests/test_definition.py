"""The definition of the rigidity: a constrained change d of a prediction costs dL = R d^2 / 2.

The constrained minimum is found by direct minimisation on the constraint's
null space (least squares on the stacked loss), never through g^T H^-1 g.
"""

import numpy as np
import pytest
from scipy.linalg import null_space

from rigidity import Hessian, force_rows, loss_rows, structure_features


def _loss(w, A, b, lam, reg):
    r = A @ w - b
    return 0.5 * np.sum(lam * r**2) + 0.5 * reg * w @ w


def _constrained_minimum(A, b, lam, reg, g, target):
    """min_w 0.5 sum lam (A w - b)^2 + 0.5 reg |w|^2 subject to g.w = target."""
    w_p = g * target / (g @ g)  # a particular solution of the constraint
    N = null_space(g[None, :])  # (d, d-1) basis of the directions that keep g.w fixed
    sq = np.sqrt(lam)[:, None]
    # stacked least squares in t, w = w_p + N t
    M = np.vstack([sq * (A @ N), np.sqrt(reg) * N])
    rhs = np.concatenate([np.sqrt(lam) * (b - A @ w_p), -np.sqrt(reg) * w_p])
    t, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    return w_p + N @ t


def _check(A, b, lam, reg, g, rigidity_value):
    d = A.shape[1]
    sq = np.sqrt(lam)[:, None]
    w0, *_ = np.linalg.lstsq(np.vstack([sq * A, np.sqrt(reg) * np.eye(d)]),
                             np.concatenate([np.sqrt(lam) * b, np.zeros(d)]), rcond=None)
    L0 = _loss(w0, A, b, lam, reg)
    for delta in (1e-3, 0.1, 1.0):
        w = _constrained_minimum(A, b, lam, reg, g, g @ w0 + delta)
        dL = _loss(w, A, b, lam, reg) - L0
        assert dL == pytest.approx(rigidity_value * delta**2 / 2, rel=1e-7, abs=1e-13)


@pytest.mark.parametrize("reg", [0.0, 1e-2])
def test_pr_is_the_curvature_of_the_constrained_loss(rng, reg):
    n, d = 40, 8
    A = rng.normal(size=(n, d))
    b = rng.normal(size=n)
    lam = rng.uniform(0.2, 3.0, size=n)
    h = Hessian(d, regularizer=reg).add(A, weights=lam)
    g = rng.normal(size=d)
    _check(A, b, lam, reg, g, h.pr(g[None])[0])


def test_lpr_is_the_curvature_for_a_local_prediction(rng):
    # structures of 3-7 atoms; the model is trained on total energies = sums of local terms
    d, n_struct = 6, 30
    counts = rng.integers(3, 8, size=n_struct)
    index = np.repeat(np.arange(n_struct), counts)
    phi = rng.normal(size=(len(index), d))
    A = structure_features(phi, index)  # energy rows
    b = rng.normal(size=n_struct)
    lam = np.ones(n_struct)
    reg = 1e-3
    h = Hessian(d, regularizer=reg).add(A)
    j = 17  # one atom: its local energy phi_j . w is the constrained prediction
    _check(A, b, lam, reg, phi[j], h.lpr(phi[j : j + 1])[0])


def test_cpr_is_the_curvature_for_one_component(rng):
    n, d = 50, 9
    A = rng.normal(size=(n, d))
    b = rng.normal(size=n)
    lam = np.ones(n)
    h = Hessian(d, regularizer=1e-4).add(A)
    x = rng.normal(size=d)
    blocks = {"two-body": slice(0, 3), "three-body": [3, 4, 5, 6], "rest": np.arange(d) >= 7}
    cpr = h.cpr(x[None], blocks)
    for name, block in blocks.items():
        mask = np.zeros(d, dtype=bool)
        mask[block] = True
        g = np.where(mask, x, 0.0)  # the component's contribution x_C . w_C
        _check(A, b, lam, 1e-4, g, cpr[name][0])


def test_force_rigidity_with_an_energy_and_force_loss(rng):
    # A loss over energies and forces (paper eq. 5) with separate weights; the
    # constrained prediction is one force component of a new structure.
    d, n_struct, n_at = 5, 12, 4
    phi_grad = rng.normal(size=(n_struct * n_at * n_at, 3, d))  # d phi_j / d r_k for all pairs
    k_index = np.tile(np.repeat(np.arange(n_at), n_at), n_struct) + np.repeat(np.arange(n_struct) * n_at, n_at * n_at)
    F = force_rows(phi_grad, k_index, n_struct * n_at)
    E = rng.normal(size=(n_struct, d))
    G, lam = loss_rows(energy=E, forces=F, lambda_energy=1.0, lambda_forces=0.1)
    b = rng.normal(size=len(G))
    h = Hessian(d, regularizer=1e-6).add(G, weights=lam)
    g = -rng.normal(size=d)
    _check(G, b, lam, 1e-6, g, h.pr(g)[0])
