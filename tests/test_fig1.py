"""Fig 1's statistics: isolines, coverage, bins and rank correlation against direct computations, and the
calibration recovering a known scale on synthetic data."""

import numpy as np
import pytest
from scipy.stats import norm

from experiments.fig1_uncertainty_vs_error import binned, coverage, isoline_factors, spearman
from rigidity import calibrate


def test_isolines_enclose_their_gaussian_mass():
    z = isoline_factors()
    np.testing.assert_allclose(2 * norm.cdf(z) - 1, [0.68, 0.95, 0.99], rtol=1e-12)
    np.testing.assert_allclose(isoline_factors([2 * norm.cdf(1) - 1]), [1.0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        isoline_factors([1.0])


def test_coverage_and_bins_against_direct_counts(rng):
    e, s = rng.normal(size=101), rng.uniform(0.5, 2, size=101)
    cov = coverage(e, s)
    for k in (1, 2, 3):
        assert cov[k] == sum(abs(a) <= k * b for a, b in zip(e, s)) / 101
    v, sq = rng.uniform(size=103), rng.uniform(size=103)
    x, y = binned(v, sq, 10)
    assert len(x) == 10  # the last 3 are dropped
    pairs = sorted(zip(v, sq))
    for b in range(10):
        chunk = pairs[10 * b:10 * b + 10]
        assert x[b] == pytest.approx(np.mean([p[0] for p in chunk]))
        assert y[b] == pytest.approx(np.mean([p[1] for p in chunk]))
    assert np.all(np.diff(x) > 0)
    with pytest.raises(ValueError, match="per_bin must be between 1 and the 103"):
        binned(v, sq, 104)


def test_spearman_is_the_correlation_of_ranks(rng):
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    assert spearman(x, y) == pytest.approx(np.corrcoef(rank(x), rank(y))[0, 1], rel=1e-12)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)


def test_calibration_recovers_a_known_scale(rng):
    alpha = 3.7
    v = np.exp(rng.normal(size=20000))
    r = rng.normal(size=20000) * np.sqrt(alpha * v)
    fitted = calibrate(v, r)
    assert fitted == pytest.approx(alpha, rel=0.03)
    cov = coverage(r, np.sqrt(fitted * v))
    assert cov[1] == pytest.approx(0.683, abs=0.01) and cov[2] == pytest.approx(0.954, abs=0.005)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_the_papers_last_layer_variances_against_a_covariance_built_by_hand(reduce):
    """Figs 1-3's H: sigma^2 I plus the outer products of the training structures' mean (or summed) last-layer
    features; the variance of a structure's energy (per atom for "mean") and the LPR of each atom from it."""
    pytest.importorskip("mace")
    from omegaconf import OmegaConf
    from test_last_layer import clusters, small_mace

    from experiments.models._network import paper_llpr, predictions
    from rigidity.last_layer import MACELastLayer

    ll = MACELastLayer(small_mace())
    train, test = clusters(8, seed=3), clusters(4, seed=4)
    for k, a in enumerate(test):
        a.info["energy"] = -10.0 * len(a) + 0.1 * k
    config = OmegaConf.create({"name": "mace", "rigidity": {"regularizer": 1e-6, "reduce": reduce}})
    llpr = paper_llpr(ll, config).fit(train)
    got = predictions(llpr, test, reduce)

    def structure_rows(frames):
        phi, structure = ll.features(frames)
        g = np.array([phi[structure == i].sum(0) for i in range(len(frames))])
        return (g / np.bincount(structure)[:, None] if reduce == "mean" else g), phi, structure

    G, _, _ = structure_rows(train)
    H = G.T @ G + 1e-6 * np.eye(ll.n_features)
    g, phi, structure = structure_rows(test)
    np.testing.assert_allclose(got["variance"], np.einsum("ij,ij->i", g, np.linalg.solve(H, g.T).T), rtol=1e-8)
    np.testing.assert_allclose(got["lpr"], 1 / np.einsum("ij,ij->i", phi, np.linalg.solve(H, phi.T).T), rtol=1e-8)
    n = np.bincount(structure)
    energy = ll.energies(test)[1]
    np.testing.assert_allclose(got["energy"], energy / n if reduce == "mean" else energy, rtol=1e-12)
    reference = np.array([a.info["energy"] for a in test])
    np.testing.assert_allclose(got["reference"], reference / n if reduce == "mean" else reference, rtol=1e-14)
