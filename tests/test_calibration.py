import numpy as np
import pytest

from rigidity import calibrate


def test_nll_scale_recovers_the_true_scale(rng):
    var = rng.uniform(0.1, 5.0, size=200_000)
    residuals = rng.normal(size=var.size) * np.sqrt(3.7 * var)
    assert calibrate(var, residuals) == pytest.approx(3.7, rel=0.01)
    assert calibrate(var, residuals, method="ratio") == pytest.approx(3.7, rel=0.02)


def test_nll_scale_minimises_the_gaussian_nll(rng):
    var = rng.uniform(0.1, 5.0, size=300)
    residuals = rng.normal(size=300) * var

    def nll(a):
        return np.sum(0.5 * np.log(2 * np.pi * a * var) + residuals**2 / (2 * a * var))

    a = calibrate(var, residuals)
    assert nll(a) < nll(a * 1.01) and nll(a) < nll(a * 0.99)


def test_bad_calibration_input():
    with pytest.raises(ValueError, match="differ"):
        calibrate(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"must be > 0; entries \[1\]"):
        calibrate(np.array([1.0, 0.0]), np.ones(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        calibrate(np.ones(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="method"):
        calibrate(np.ones(2), np.ones(2), method="mse")
