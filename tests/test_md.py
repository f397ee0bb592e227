"""The MD stage of Figs 8-9 (experiments/md.py): the instability detector on constructed configurations, a run on
the live calculator that stops at a collapse and writes that frame, and a written trajectory that reloads with the
PR and LPR of every frame."""

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("torch")
pytest.importorskip("mace")

from test_last_layer import small_mace  # noqa: E402

from experiments.md import MDConfig, instability, min_distance, simulate  # noqa: E402


def beads(n=8, box=5.0, seed=0, spacing=2.0):
    """n beads on a jittered simple-cubic lattice (at least ``spacing`` apart) in a periodic cube."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n], dtype=float)
    positions = grid * (box / side) + rng.uniform(-0.2, 0.2, size=(n, 3))
    atoms = Atoms(numbers=[8] * n, positions=positions, cell=[box] * 3, pbc=True)
    atoms.wrap()
    assert min_distance(atoms) > spacing
    return atoms


def test_the_detector_names_what_is_wrong():
    atoms = beads(box=8.0)
    ok = np.zeros((len(atoms), 3))
    assert instability(atoms, ok, 0.0, 1.8, 10.0) is None
    close = atoms.copy()  # two beads 1.5 A apart across the periodic boundary
    close.positions[0] = [0.2, 0.3, 0.3]
    close.positions[1] = [close.cell[0, 0] - 1.3, 0.3, 0.3]
    assert min_distance(close) == pytest.approx(1.5)
    assert "1.500 A apart" in instability(close, ok, 0.0, 1.8, 10.0)
    strong = ok.copy()
    strong[3] = [0.0, 12.0, 5.0]
    assert "13.00 eV/A" in instability(atoms, strong, 0.0, 1.8, 10.0)
    assert instability(atoms, strong, 0.0, 1.8, 20.0) is None
    nan = ok.copy()
    nan[2, 1] = np.nan
    assert instability(atoms, nan, 0.0, 1.8, 10.0) == "non-finite forces"
    assert instability(atoms, ok, float("inf"), 1.8, 10.0) == "a non-finite energy"


@pytest.fixture(scope="module")
def llpr():
    from rigidity.last_layer import LLPR, MACELastLayer

    ll = MACELastLayer(small_mace(seed=3))
    training = [beads(seed=s) for s in range(3)]
    return LLPR(ll, energy_weight=1.0, force_weight=1.0).fit(training)  # energy rows too: LPRs well above sigma^2


def test_a_collapsing_run_stops_at_its_first_unstable_step(llpr):
    """Beads at 20,000 K (0.3 A/fs) collide within a few hundred steps: the run stops at the first step below the
    threshold and writes that frame."""
    start = beads(seed=5)
    md = MDConfig(name="test", timestep=0.5, temperature=20000.0, friction=1e-4, n_steps=400, stride=50, seed=1,
                  stop_min_distance=min_distance(start) - 0.4, stop_max_force=1e6)
    out = simulate(md, llpr, start)
    last = out[-1]
    assert last.info.get("unstable") and last.info["md_status"].startswith("unstable: beads")
    assert last.info["min_distance"] < md.stop_min_distance
    assert all(a.info["min_distance"] >= md.stop_min_distance for a in out[:-1])
    assert last.info["step"] < md.n_steps and all(a.info["md_status"] == "running" for a in out[:-1])
    # a stable run completes and saves every stride steps
    calm = MDConfig(name="test", timestep=0.5, temperature=10.0, friction=1e-2, n_steps=20, stride=5, seed=1,
                    stop_min_distance=0.5, stop_max_force=1e6)
    done = simulate(calm, llpr, start)
    assert [a.info["step"] for a in done] == [0, 5, 10, 15, 20] and done[-1].info["md_status"] == "completed"


def test_a_written_trajectory_reloads_with_its_pr_and_lpr(llpr, tmp_path):
    import ase.io

    md = MDConfig(name="test", timestep=0.5, temperature=300.0, friction=1e-2, n_steps=12, stride=4, seed=2,
                  stop_min_distance=0.5, stop_max_force=1e6)
    out = simulate(md, llpr, beads(seed=7))
    ase.io.write(tmp_path / "t.extxyz", out, format="extxyz")
    back = ase.io.read(tmp_path / "t.extxyz", ":")
    assert len(back) == 4
    ll = llpr.last_layer
    for a in back:
        phi, _ = ll.features([a])
        lpr = llpr.hessian.lpr(phi)
        assert lpr.min() > 1e-2  # extxyz keeps 8 decimals: well resolved
        np.testing.assert_allclose(a.arrays["lpr"], lpr, rtol=1e-6)
        np.testing.assert_allclose(a.info["pr"], 1.0 / llpr.hessian.variance(phi.sum(0, keepdims=True))[0],
                                   rtol=1e-8)
        np.testing.assert_allclose(a.get_forces(), ll.evaluate([a])["forces"], rtol=1e-6, atol=1e-9)
        assert a.info["min_distance"] == pytest.approx(min_distance(a))


def test_bad_protocols_are_refused_by_name(llpr):
    with pytest.raises(ValueError, match="timestep must be a finite number > 0"):
        simulate(MDConfig(name="x", timestep=0.0, temperature=300.0, friction=1e-2, n_steps=1, stride=1), llpr,
                 beads())
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        simulate(MDConfig(name="x", timestep=1.0, temperature=300.0, friction=1e-2, n_steps=1, stride=0), llpr,
                 beads())
