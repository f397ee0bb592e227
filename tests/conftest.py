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


def run_smoke_experiment(root, module, experiment, datasets):
    """Smoke datasets, then the train, rigidity and figure stages of one experiment, as the Snakemake rules call them.

    Returns {"data": {dataset: path}, "inputs": "a,b" (the datasets), "manifest", "table", "pdf"}.
    """
    from experiments.data import run as make_dataset
    from experiments.datasets.io import write_frames

    data = {name: root / "data" / f"{name}.extxyz" for name in datasets}
    for name, path in data.items():
        write_frames(make_dataset(compose([f"dataset={name}", "scale=smoke"])), path)
    inputs = ",".join(str(p) for p in data.values())
    manifest = root / "models" / experiment / "manifest.json"
    table = root / "tables" / f"{experiment}.csv"
    pdf = root / "figures" / f"{experiment}.pdf"
    base = [f"experiment={experiment}", "scale=smoke"]
    module.train(compose(base + [f"inputs=[{inputs}]", f"output={manifest}"]))
    module.rigidity(compose(base + [f"inputs=[{manifest},{inputs}]", f"output={table}"]))
    module.figure(compose(base + [f"inputs=[{table},{manifest}]", f"output={pdf}"]))
    return dict(data=data, inputs=inputs, manifest=manifest, table=table, pdf=pdf)
