"""Adding samples: Appendix B's +1, low-rank updates and greedy selection against rebuilding H."""

import numpy as np
import pytest
from conftest import quad_inv, random_training

from rigidity import Hessian, select_greedy


@pytest.mark.parametrize("reg", [0.0, 1e-3, 10.0])
def test_adding_a_sample_raises_its_own_pr_by_one(rng, reg):
    X, _, _ = random_training(rng, n=40, d=10)
    h = Hessian(10, regularizer=reg).add(X)
    x = rng.normal(size=(1, 10)) * 3
    before = h.pr(x)[0]
    after = h.updated(x).pr(x)[0]  # low-rank path
    rebuilt = Hessian(10, regularizer=reg).add(np.vstack([X, x])).pr(x)[0]  # fresh factorisation
    assert after - before == pytest.approx(1.0, rel=1e-9)
    assert rebuilt - before == pytest.approx(1.0, rel=1e-9)


def test_a_weighted_sample_raises_its_pr_by_its_weight(rng):
    X, _, _ = random_training(rng, n=40, d=10)
    h = Hessian(10, regularizer=1e-3).add(X)
    x = rng.normal(size=(1, 10))
    assert h.updated(x, weights=[2.5]).pr(x)[0] - h.pr(x)[0] == pytest.approx(2.5, rel=1e-9)


def test_updated_agrees_with_rebuilding(rng):
    X, lam, H = random_training(rng, n=50, d=12, reg=1e-2)
    h = Hessian(12, regularizer=1e-2).add(X, weights=lam)
    G = rng.normal(size=(7, 12))
    h.pr(G)  # factorise, so that updates go through the low-rank path
    steps = [rng.normal(size=(k, 12)) for k in (1, 3, 2)]
    ws = [rng.uniform(0.1, 2, size=len(s)) for s in steps]
    cur, Hcur = h, H.copy()
    for s, w in zip(steps, ws):
        cur = cur.updated(s, weights=w)
        Hcur += s.T @ (w[:, None] * s)
        np.testing.assert_allclose(cur.matrix, Hcur, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cur.variance(G), quad_inv(Hcur, G), rtol=1e-10)
    assert cur._factor is not None and cur._factor.rank == 6  # the factorisation was reused
    # the original is unchanged
    np.testing.assert_allclose(h.variance(G), quad_inv(H, G), rtol=1e-10)


def test_updated_falls_back_to_a_new_factorisation_past_the_rank_limit(rng):
    X, lam, H = random_training(rng, n=50, d=12, reg=1e-2)
    h = Hessian(12, regularizer=1e-2).add(X, lam)
    h.pr(X[:1])
    big = rng.normal(size=(20, 12))
    new = h.updated(big)
    assert new._factor is None
    np.testing.assert_allclose(new.variance(X[:5]), quad_inv(H + big.T @ big, X[:5]), rtol=1e-10)


def _rebuilt_pr(H, targets, rows, w=None):
    w = np.ones(len(rows)) if w is None else w
    return 1.0 / quad_inv(H + rows.T @ (w[:, None] * rows), targets)


def test_pr_after_adding_single_rows(rng):
    X, lam, H = random_training(rng)
    h = Hessian(12, regularizer=1e-3).add(X, weights=lam)
    T = rng.normal(size=(9, 12))
    C = rng.normal(size=(15, 12))
    w = rng.uniform(0.1, 3, size=15)
    got = h.pr_after_adding(T, C, weights=w)
    assert got.shape == (15, 9)
    for c in range(15):
        np.testing.assert_allclose(got[c], _rebuilt_pr(H, T, C[c : c + 1], w[c : c + 1]), rtol=1e-10)


def test_pr_after_adding_multi_row_candidates(rng):
    X, lam, H = random_training(rng)
    h = Hessian(12, regularizer=1e-3).add(X, weights=lam)
    T = rng.normal(size=(5, 12))
    uniform = rng.normal(size=(6, 4, 12))  # e.g. the energy and 3 force rows of a 1-atom structure
    got = h.pr_after_adding(T, uniform)
    for c in range(6):
        np.testing.assert_allclose(got[c], _rebuilt_pr(H, T, uniform[c]), rtol=1e-10)
    ragged = [rng.normal(size=(k, 12)) for k in (1, 5, 2, 7, 3)]
    wr = [rng.uniform(0.1, 2, size=len(r)) for r in ragged]
    got = h.pr_after_adding(T, ragged, weights=wr)
    for c, (r, w) in enumerate(zip(ragged, wr)):
        np.testing.assert_allclose(got[c], _rebuilt_pr(H, T, r, w), rtol=1e-10)


def _brute_force_greedy(H, T, cands, n_select, objective):
    picks, values, Hc = [], [], H.copy()
    for _ in range(n_select):
        best, best_score = None, -np.inf
        for i, rows in enumerate(cands):
            if i in picks:
                continue
            var = np.einsum("ij,ji->i", T, np.linalg.inv(Hc + rows.T @ rows) @ T.T)
            score = {"mean_pr": np.mean(1 / var), "min_pr": np.min(1 / var), "mean_variance": -np.mean(var)}[objective]
            if score > best_score:
                best, best_score = i, score
        picks.append(best)
        values.append(-best_score if objective == "mean_variance" else best_score)
        Hc = Hc + cands[best].T @ cands[best]
    return picks, values


@pytest.mark.parametrize("objective", ["mean_pr", "min_pr", "mean_variance"])
def test_greedy_selection_equals_brute_force(rng, objective):
    X, lam, H = random_training(rng, n=30, d=10, reg=1e-2)
    h = Hessian(10, regularizer=1e-2).add(X, lam)
    T = rng.normal(size=(8, 10)) + 2.0  # targets away from the training data
    C = rng.normal(size=(25, 10)) * rng.uniform(0.2, 2, size=(25, 1))
    sel = select_greedy(h, T, C, 6, objective=objective)
    picks, values = _brute_force_greedy(H, T, [C[i : i + 1] for i in range(25)], 6, objective)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.objective, values, rtol=1e-9)
    assert len(set(sel.indices.tolist())) == 6


def test_greedy_selection_with_multi_row_candidates(rng):
    X, lam, H = random_training(rng, n=30, d=10, reg=1e-2)
    h = Hessian(10, regularizer=1e-2).add(X, lam)
    T = rng.normal(size=(8, 10))
    cands = [rng.normal(size=(k, 10)) for k in rng.integers(1, 5, size=15)]
    sel = select_greedy(h, T, cands, 5)
    picks, values = _brute_force_greedy(H, T, cands, 5, "mean_pr")
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.objective, values, rtol=1e-9)


def test_greedy_mean_pr_never_decreases(rng):
    X, _, _ = random_training(rng, n=30, d=10, reg=1e-2)
    h = Hessian(10, regularizer=1e-2).add(X)
    T = rng.normal(size=(8, 10))
    sel = select_greedy(h, T, rng.normal(size=(40, 10)), 10)
    assert np.all(np.diff(sel.objective) > 0)
    assert sel.objective[0] > h.pr(T).mean()
