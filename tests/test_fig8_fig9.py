"""Figs 8-9's own arithmetic: the moving average of the relative PR, the run keys, and Fig 9's choice of the first
unstable trajectory (the stages end to end: tests/test_workflow_smoke.py)."""

import numpy as np
import pytest
from ase import Atoms

from experiments.fig8_cg_water import moving_average, size_and_block
from experiments.fig9_cg_water_instability import first_unstable


def test_moving_average_is_the_trailing_mean():
    rng = np.random.default_rng(0)
    v = rng.normal(size=37)
    for window in (1, 5, 37, 100):
        want = [v[max(0, i + 1 - window):i + 1].mean() for i in range(len(v))]
        np.testing.assert_allclose(moving_average(v, window), want, rtol=1e-12)


def test_run_keys_of_fig8():
    assert size_and_block("n50-b3") == (50, 3)
    with pytest.raises(ValueError, match="n<size>-b<k>"):
        size_and_block("n50-s3")


def _trajectory(path, statuses):
    import ase.io

    frames = []
    for k, status in enumerate(statuses):
        a = Atoms("O2", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[8] * 3, pbc=True)
        a.info.update(step=k, time_ps=0.001 * k, md_status=status)
        if status.startswith("unstable"):
            a.info["unstable"] = True
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_fig9_takes_the_first_unstable_trajectory_and_says_when_there_is_none(tmp_path):
    stable = _trajectory(tmp_path / "a.extxyz", ["running", "completed"])
    broken = _trajectory(tmp_path / "b.extxyz", ["running", "running", "unstable: beads 1.7 A apart"])
    name, frames = first_unstable({"a": stable, "b": broken})
    assert name == "b" and len(frames) == 3
    with pytest.raises(ValueError, match="none of the trajectories became unstable.*a: completed after 0.001 ps"):
        first_unstable({"a": stable})
