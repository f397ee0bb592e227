"""Accumulation, merging, array kinds, limiting cases and bad input of the Hessian."""

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the torch extra is absent: the numpy tests still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (the torch extra)")

from conftest import quad_inv, random_training  # noqa: E402

from rigidity import Hessian  # noqa: E402


def test_variance_matches_an_independent_solve(rng):
    X, lam, H = random_training(rng, n=3000, d=40)
    h = Hessian(40, regularizer=1e-3).add(X, weights=lam)
    np.testing.assert_allclose(h.matrix, H, rtol=1e-12, atol=1e-13 * np.abs(H).max())
    G = rng.normal(size=(2500, 40))  # more rows than one chunk
    np.testing.assert_allclose(h.variance(G), quad_inv(H, G), rtol=1e-10)
    np.testing.assert_allclose(h.pr(G), 1 / quad_inv(H, G), rtol=1e-10)
    np.testing.assert_allclose(h.lpr(G), h.pr(G), rtol=0)
    Z = h.whiten(G[:10])
    np.testing.assert_allclose(Z @ Z.T, G[:10] @ np.linalg.solve(H, G[:10].T), rtol=1e-9, atol=1e-12)


def test_blocked_triangular_products_cover_every_feature(rng):
    # d = 300 -> several triangular blocks of unequal widths
    X = rng.normal(size=(700, 300))
    h = Hessian(300, regularizer=0.5).add(X)
    G = rng.normal(size=(50, 300))
    assert len(h._get_factor().blocks()) > 1
    np.testing.assert_allclose(h.variance(G), quad_inv(X.T @ X + 0.5 * np.eye(300), G), rtol=1e-10)


def test_shards_merge_to_the_full_hessian(rng):
    X, lam, H = random_training(rng, n=90, d=12, reg=0.1)
    shards = [Hessian(12, regularizer=0.1).add(X[s : s + 30], weights=lam[s : s + 30]) for s in (0, 30, 60)]
    merged = shards[0] + shards[1] + shards[2]
    np.testing.assert_allclose(merged.matrix, H, rtol=1e-12, atol=1e-13 * np.abs(H).max())
    np.testing.assert_allclose(sum(shards).matrix, H, rtol=1e-12, atol=1e-13 * np.abs(H).max())
    assert merged.n_rows == 90
    G = rng.normal(size=(5, 12))
    np.testing.assert_allclose(merged.pr(G), Hessian(12, 0.1).add(X, lam).pr(G), rtol=1e-12)
    # adding rows in several calls is the same as one call
    h = Hessian(12, regularizer=0.1)
    for s in (0, 30, 60):
        h.add(X[s : s + 30], weights=lam[s : s + 30])
    np.testing.assert_allclose(h.matrix, H, rtol=1e-12, atol=1e-13 * np.abs(H).max())


def test_merging_refuses_mismatched_shards():
    with pytest.raises(ValueError, match="regularizer"):
        Hessian(3, 0.1) + Hessian(3, 0.2)
    with pytest.raises(ValueError, match="3 and 4 features"):
        Hessian(3) + Hessian(4)


@needs_torch
def test_numpy_and_torch_give_the_same_numbers(rng):
    X, lam, _ = random_training(rng, n=80, d=10)
    G = rng.normal(size=(20, 10))
    C = rng.normal(size=(6, 2, 10))
    hn = Hessian(10, regularizer=1e-3).add(X, weights=lam)
    ht = Hessian(10, regularizer=1e-3).add(torch.tensor(X), weights=torch.tensor(lam))
    assert isinstance(hn.matrix, np.ndarray) and isinstance(ht.matrix, torch.Tensor)
    np.testing.assert_allclose(ht.matrix.numpy(), hn.matrix, rtol=1e-13)
    for method in ("variance", "pr", "lpr", "whiten"):
        a = getattr(hn, method)(G)
        b = getattr(ht, method)(torch.tensor(G))
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-10)
    # mixed kinds: each call returns the kind it was given
    assert isinstance(hn.pr(torch.tensor(G)), torch.Tensor)
    assert isinstance(ht.pr(G), np.ndarray)
    blocks = {"a": slice(0, 4), "b": torch.arange(4, 10)}
    cn, ct = hn.cpr(G, blocks), ht.cpr(torch.tensor(G), blocks)
    for k in blocks:
        np.testing.assert_allclose(ct[k].numpy(), cn[k], rtol=1e-10)
    np.testing.assert_allclose(
        ht.pr_after_adding(torch.tensor(G), torch.tensor(C)).numpy(), hn.pr_after_adding(G, C), rtol=1e-10
    )
    ut, un = ht.updated(torch.tensor(G[:2])), hn.updated(G[:2])
    np.testing.assert_allclose(ut.pr(G), un.pr(G), rtol=1e-10)


def test_float32_accumulator(rng):
    X, lam, H = random_training(rng, n=200, d=8, reg=1e-2)
    h = Hessian(8, regularizer=1e-2, dtype=np.float32).add(X, lam)
    G = rng.normal(size=(4, 8))
    out = h.pr(G)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 1 / quad_inv(H, G), rtol=1e-4)


@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs torch and a CUDA device")
@pytest.mark.gpu
def test_gpu_matches_cpu(rng):
    X, lam, _ = random_training(rng, n=500, d=64)
    G = rng.normal(size=(300, 64))
    hg = Hessian(64, regularizer=1e-3, device="cuda").add(torch.tensor(X, device="cuda"), torch.tensor(lam))
    out = hg.pr(torch.tensor(G, device="cuda"))
    assert out.device.type == "cuda"
    np.testing.assert_allclose(out.cpu().numpy(), Hessian(64, 1e-3).add(X, lam).pr(G), rtol=1e-9)


def test_cpr_of_one_block_holding_every_feature_is_the_pr(rng):
    X, _, _ = random_training(rng)
    h = Hessian(12, regularizer=1e-3).add(X)
    G = rng.normal(size=(10, 12))
    np.testing.assert_allclose(h.cpr(G, {"all": slice(None)})["all"], h.pr(G), rtol=1e-12)
    np.testing.assert_allclose(h.cpr(G, {"all": np.ones(12, bool)})["all"], h.pr(G), rtol=1e-12)


def test_cpr_matches_zeroed_features(rng):
    X, lam, H = random_training(rng)
    h = Hessian(12, regularizer=1e-3).add(X, lam)
    h = h.updated(rng.normal(size=(2, 12)))  # also through the low-rank stages
    Hu = h.matrix
    G = rng.normal(size=(6, 12))
    idx = np.array([1, 5, 6, 11])
    Gc = np.zeros_like(G)
    Gc[:, idx] = G[:, idx]
    np.testing.assert_allclose(h.cpr(G, {"c": idx})["c"], 1 / quad_inv(Hu, Gc), rtol=1e-10)


def test_pr_is_invariant_under_an_invertible_change_of_features(rng):
    X, lam, _ = random_training(rng, n=70, d=9)
    A = rng.normal(size=(9, 9)) + 3 * np.eye(9)  # invertible mixing of features
    G = rng.normal(size=(12, 9))
    pr = Hessian(9).add(X, lam).pr(G)
    pr_mixed = Hessian(9).add(X @ A, lam).pr(G @ A)
    np.testing.assert_allclose(pr_mixed, pr, rtol=1e-9)
    # with a regulariser the invariance is broken, so the test above can fail
    pr_reg = Hessian(9, regularizer=10.0).add(X @ A, lam).pr(G @ A)
    assert not np.allclose(pr_reg, Hessian(9, regularizer=10.0).add(X, lam).pr(G), rtol=1e-3)


def test_zero_row_has_infinite_rigidity(rng):
    X, _, _ = random_training(rng)
    h = Hessian(12, regularizer=1e-3).add(X)
    assert np.isinf(h.pr(np.zeros((1, 12)))[0])


def test_accuracy_on_an_ill_conditioned_hessian(rng):
    # cond(H) = 1e12; g lies along stiff directions, where an explicit inverse loses
    # half the digits. Reference: mpmath at 40 digits on the same float64 matrix.
    mpmath = pytest.importorskip("mpmath")
    d = 40
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    H = (Q * np.logspace(0, -12, d)) @ Q.T
    H = (H + H.T) / 2
    h = Hessian(d)
    h._acc = H.copy()  # an exact float64 H, as if accumulated
    mpmath.mp.dps = 40
    Hm = mpmath.matrix(H.tolist())
    for soft in (0.0, 1e-9):
        g = Q[:, :5] @ rng.normal(size=5) + soft * Q[:, -1]
        gm = mpmath.matrix(g.tolist())
        ref = float((gm.T * mpmath.lu_solve(Hm, gm))[0])
        assert abs(h.variance(g[None])[0] - ref) / ref < 1e-10
        assert abs(g @ np.linalg.inv(H) @ g - ref) / ref > 1e-9  # the bound above is not trivial


# -- bad input -------------------------------------------------------------------


def test_shape_mismatch_names_the_shapes(rng):
    h = Hessian(5, regularizer=1.0)
    with pytest.raises(ValueError, match=r"shape \(3, 4\) do not match the Hessian's 5 features"):
        h.add(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"weights of shape \(2,\) do not match the 3 rows"):
        h.add(np.ones((3, 5)), weights=np.ones(2))
    h.add(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(2, 6\)"):
        h.pr(np.ones((2, 6)))
    with pytest.raises(ValueError, match="outside the 5 features"):
        h.cpr(np.ones((2, 5)), {"x": [0, 7]})
    with pytest.raises(ValueError, match="selects no features"):
        h.cpr(np.ones((2, 5)), {"x": slice(3, 3)})


def test_nan_and_inf_are_refused_and_nothing_is_added(rng):
    h = Hessian(4, regularizer=1.0).add(rng.normal(size=(10, 4)))
    before = h.matrix
    G = rng.normal(size=(6, 4))
    G[2, 1] = np.nan
    G[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[2, 4\]"):
        h.add(G)
    np.testing.assert_array_equal(h.matrix, before)
    assert h.n_rows == 10
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[2, 4\]"):
        h.pr(G)
    with pytest.raises(ValueError, match="NaN or inf"):
        h.add(np.ones((2, 4)), weights=[1.0, np.nan])
    with pytest.raises(ValueError, match="NaN or inf"):
        h.pr_after_adding(np.ones((1, 4)), G)


def test_negative_weights_are_refused():
    with pytest.raises(ValueError, match=r"negative values at rows \[1\].*>= 0"):
        Hessian(2).add(np.eye(2), weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="regularizer must be a finite number >= 0"):
        Hessian(2, regularizer=-1.0)
    with pytest.raises(ValueError, match="n_features must be a positive integer"):
        Hessian(0)


def test_singular_hessian_says_how_many_directions_are_free(rng):
    X = rng.normal(size=(7, 10))  # 7 rows cannot constrain 10 weights
    h = Hessian(10).add(X)
    with pytest.raises(ValueError, match=r"singular: 3 of 10 directions are unconstrained by the 7 rows.*regularizer"):
        h.pr(X[:1])
    # exactly collinear features: one free direction
    Y = rng.normal(size=(50, 4))
    Y = np.hstack([Y, Y[:, :1] * 2.0])
    with pytest.raises(ValueError, match="1 of 5 directions"):
        Hessian(5).add(Y).pr(Y[:1])
    with pytest.raises(ValueError, match="10 of 10"):
        Hessian(10).pr(X[:1])
    # the suggested remedy works
    assert np.all(np.isfinite(Hessian(10, regularizer=1e-6).add(X).pr(X)))
