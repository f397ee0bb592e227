import os

# One OpenMP thread per test process, set before numpy, torch or tblite load their
# runtimes: on 2 cores, threaded tight-binding on tiny clusters is several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20240412)


def quad_inv(H, G):
    """g^T H^-1 g by an independent route: numpy's LU solve."""
    G = np.atleast_2d(G)
    return np.einsum("ij,ji->i", G, np.linalg.solve(H, G.T))


def random_training(rng, n=60, d=12, reg=1e-3):
    """Rows, loss weights and the dense Hessian of a random ridge problem."""
    X = rng.normal(size=(n, d)) @ np.diag(np.linspace(0.3, 3.0, d))
    lam = rng.uniform(0.5, 2.0, size=n)
    H = X.T @ (lam[:, None] * X) + reg * np.eye(d)
    return X, lam, H


CONFIG_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "config")


def compose(overrides):
    """The Hydra config the entry points see, with command-line style overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="main", overrides=list(overrides))
