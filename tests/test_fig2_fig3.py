"""Figs 2 and 3's statistics: local energies that sum to the model's energy, committee variance, the normalised
LPR, and the paper's normalised relative LPR difference, against direct computations."""

import numpy as np
import pytest

from experiments.fig2_local_variance_vs_lpr import committee_variance, local_energies, normalised_lpr
from experiments.fig3_learning_dynamics import normalised_relative_difference


def test_local_energies_sum_to_the_models_energies():
    pytest.importorskip("mace")
    from test_last_layer import clusters, small_mace

    from rigidity.last_layer import MACELastLayer

    ll = MACELastLayer(small_mace())
    frames = clusters(3)
    local, structure = local_energies(ll, frames)
    own = ll.energies(frames)[1]
    np.testing.assert_allclose(np.bincount(structure, weights=local), own, rtol=1e-12)


def test_committee_variance_and_normalised_lpr(rng):
    members = rng.normal(size=(10, 7))
    np.testing.assert_allclose(committee_variance(list(members)),
                               [np.sum((c - c.mean()) ** 2) / 9 for c in members.T], rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2 members"):
        committee_variance([members[0]])
    lpr = rng.uniform(1, 5, size=9)
    assert normalised_lpr(lpr).max() == 1.0 and np.argmax(normalised_lpr(lpr)) == np.argmax(lpr)


def test_normalised_relative_difference_by_hand(rng):
    reference = np.array([1.0, 4.0, 2.0])  # j = 1
    assert normalised_relative_difference(3.0 * reference, reference) == 0.0  # a constant factor does not count
    model = np.array([2.0, 4.0, 1.0])  # normalised by its own LPR at j: [0.5, 1, 0.25] against [0.25, 1, 0.5]
    expected = (abs(0.5 - 0.25) / 0.25 + 0 + abs(0.25 - 0.5) / 0.5) / 3
    assert normalised_relative_difference(model, reference) == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError, match="positive"):
        normalised_relative_difference(np.array([0.0, 1.0, 1.0]), reference)


def test_a_committee_is_the_main_run_less_one_block_of_one_cut():
    from experiments.fig2_local_variance_vs_lpr import committee

    assert committee(["n500", "n500-x0of10", "n500-x1of10"]) == ("n500", ["n500-x0of10", "n500-x1of10"])
    assert committee(["n500-seed1", "n500-x0of10-seed1", "n500-x3of10-seed1"])[0] == "n500-seed1"
    for runs, message in [
        (["n500-x0of10", "n500-x1of10", "n500-x2of10"], "leaves a block out"),
        (["n500", "n500-x0of10"], "at least 2 members"),
        (["n500", "n500-x0of10", "n400-x1of10"], "must be n500-x<k>of<K>"),
        (["n500", "n500-x0of10", "n500-x1of10-seed2"], "with the main run's seed"),
        (["n500", "n500-x0of10", "n500-x1of4"], r"into \[4, 10\] blocks: one K for all"),
    ]:
        with pytest.raises(ValueError, match=message):
            committee(runs)
