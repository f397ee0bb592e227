import os

# One OpenMP thread per test process, set before numpy, torch or tblite load their
# runtimes: on 2 cores, threaded tight-binding on tiny clusters is several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIERS = {"test_config.py": "config", "test_workflow.py": "workflow", "test_workflow_smoke.py": "workflow",
         "test_slurm.py": "workflow",
         "test_fig4.py": "workflow", "test_fig5.py": "workflow", "test_fig6.py": "workflow", "test_fig7.py": "workflow"}


def pytest_collection_modifyitems(config, items):
    """Tiers: config (every config composes and is typed), workflow (stages end to end, Snakemake), unit (the rest)."""
    for item in items:
        item.add_marker(getattr(pytest.mark, TIERS.get(Path(str(item.fspath)).name, "unit")))


@pytest.fixture
def rng():
    return np.random.default_rng(20240412)


def quad_inv(H, G):
    """g^T H^-1 g by an independent route: numpy's LU solve."""
    G = np.atleast_2d(G)
    return np.einsum("ij,ji->i", G, np.linalg.solve(H, G.T))


def random_training(rng, n=60, d=12, reg=1e-3):
    """Rows, loss weights and the dense Hessian of a random ridge problem."""
    X = rng.normal(size=(n, d)) * np.linspace(0.3, 3.0, d)
    lam = rng.uniform(0.5, 2.0, size=n)
    H = X.T @ (lam[:, None] * X) + reg * np.eye(d)
    return X, lam, H


def compose(overrides):
    """The Hydra config the entry points see, with command-line style overrides."""
    from experiments.config import compose as compose_config

    return compose_config(list(overrides))


class Runner:
    """The stages of one experiment run in this process, as the Snakemake rules call them (no Snakemake).

    ``build(key)`` writes the unit ``key`` (experiments/layout.py) under ``root/<scale>/`` after the units it
    needs; ``experiment(name)`` builds everything an experiment's analysis reads, then its outputs and figure.
    """

    def __init__(self, root, scale="smoke"):
        from experiments.workflow import Plan

        self.plan = Plan({"scale": scale, "results": str(root)}, cache_dir=None)
        self.scale = scale

    def cfg(self, *overrides, inputs=None, outputs=None):
        from experiments.workflow import hydra_dict

        args = [f"scale={self.scale}", *overrides]
        if inputs:
            args.append(f"inputs={hydra_dict(inputs, shell=False)}")
        if outputs:
            args.append(f"outputs={hydra_dict(outputs, shell=False)}")
        return compose(args)

    def build(self, key):
        from experiments import data, features, hessian, layout, train
        from experiments._results import save_features, save_model
        from experiments.datasets.io import write_frames

        path = Path(self.plan.path(key))
        if path.is_file():
            return path
        kind, *parts = key.split("/")
        if kind == "data":
            write_frames(data.run(self.cfg(f"dataset={parts[0]}")), path)
            return path
        model, dataset, unit = parts
        inputs = {layout.data_key(dataset): str(self.build(layout.data_key(dataset)))}
        groups = [f"model={model}", f"dataset={dataset}"]
        if kind == "features":
            save_features(features.run(self.cfg(*groups, f"kind={unit}", inputs=inputs)), path)
        elif kind == "models":
            fkey = layout.features_key(model, dataset)
            inputs[fkey] = str(self.build(fkey))
            save_model(train.run(self.cfg(*groups, f"run={unit}", inputs=inputs)), path)
        elif kind == "hessians":
            n = self.plan.hessian_shards
            shards = []
            for k in range(n):
                shard = path.parent / f"shard{k}of{n}.npz"
                path.parent.mkdir(parents=True, exist_ok=True)
                hessian.accumulate(self.cfg(*groups, f"rows={unit}", f"shard={k}", f"n_shards={n}",
                                            inputs=inputs)).save(shard)
                shards.append(str(shard))
            hessian.merge(self.cfg(inputs={"shards": shards})).save(path)
        else:
            raise ValueError(f"the test runner cannot build {key}")
        return path

    def experiment(self, name, *overrides):
        """Every input, the analysis outputs and the figure; returns {"inputs", "outputs", "pdf"}."""
        from experiments import analyse, plot

        exp = self.plan.experiments[name]
        inputs = {key: str(self.build(key)) for key in exp.inputs}
        analyse.write(self.cfg(f"experiment={name}", *overrides, inputs=inputs, outputs=exp.outputs))
        pdf = Path(self.plan.figure_targets([name])[0])
        plot.write(self.cfg(f"experiment={name}", *overrides, f"output={pdf}", inputs=exp.outputs))
        return {"inputs": inputs, "outputs": {k: Path(v) for k, v in exp.outputs.items()}, "pdf": pdf}
