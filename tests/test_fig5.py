"""Figure 5 stages (LPR-guided active learning on a liquid carbon frame): a smoke run of train, rigidity and
figure, its LPRs and LPR enhancements rebuilt with numpy, and the structures each strategy adds."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import Runner, compose

pytest.importorskip("tblite")

from experiments import fig5_active_learning as fig5  # noqa: E402
from experiments._stage import typed  # noqa: E402
from experiments.datasets.io import read_frames, write_frames  # noqa: E402
from experiments.models import le_ace  # noqa: E402

NAME = "fig5_active_learning"
BASE = [f"experiment={NAME}", "scale=smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig5_smoke")
    runner = Runner(root)
    run = runner.experiment(NAME)
    cfg = runner.cfg(f"experiment={NAME}", inputs=run["inputs"])
    exp, model = typed(cfg.experiment), typed(cfg.model)
    frame, F_frame = fig5.frame_features(cfg, exp)
    carbon = read_frames(run["inputs"]["data/carbon"]) if "data/carbon" in run["inputs"] else \
        read_frames(runner.build("data/carbon"))
    table = pd.read_csv(run["outputs"]["table"])
    target = int(table["target_atom"].iloc[0])
    ace = le_ace.descriptor(model)
    built = fig5.build_structures(frame, target, exp)  # rebuilt from the documented seeds
    features, check = fig5.construction_features(ace, built, F_frame, target)
    return SimpleNamespace(root=root, runner=runner, cfg=cfg, inputs=run["inputs"], outputs=run["outputs"],
                           exp=exp, model=model, ace=ace, features=features, check=check, frame=frame,
                           carbon=carbon, F_frame=F_frame, built=built, target=target, table=table, pdf=run["pdf"],
                           h=fig5.covariance(cfg, exp))


def mean_atom_rows(ace, atoms):
    """The structure's mean feature row, from its per-atom rows (composition column 1)."""
    A, _ = le_ace.atom_features(ace, [atoms])
    return A.mean(axis=0)


def covariance_rows(smoke):
    """The mean rows of the smoke covariance (rows "all": every carbon structure), from per-atom rows."""
    return np.array([mean_atom_rows(smoke.ace, a) for a in smoke.carbon])


def numpy_H(smoke):
    G = covariance_rows(smoke)
    return G.T @ G + float(smoke.model.rigidity.regularizer) * np.eye(G.shape[1])


def quad(H, F):
    F = np.atleast_2d(F)
    return np.einsum("ij,ji->i", F, np.linalg.solve(H, F.T))


def added(smoke, construction, strategy, n):
    """Rows (with multiplicity) that n structures of a strategy add to H, from the paper's description."""
    D = smoke.features[construction]
    if strategy in ("original", "carving"):
        return np.repeat(D[f"G_{strategy}"][:1], n, axis=0)
    if strategy == "diamond":
        return D["G_diamond"]
    rows = D[f"G_{strategy}"][:n]
    return np.vstack([rows, D["G_diamond"]]) if strategy == "high_symmetry" else rows


def neighbour_distances(atoms, centre, cutoff):
    from ase.neighborlist import neighbor_list

    i, d = neighbor_list("id", atoms, cutoff)
    return np.sort(d[i == centre])


# ----------------------------------------------------------------------------------------------


def test_smoke_run_writes_table_structures_and_figure(smoke):
    assert smoke.pdf.is_file() and smoke.pdf.with_suffix(".png").is_file()
    assert set(smoke.outputs) == {"table", "structures"} and all(p.is_file() for p in smoke.outputs.values())
    t = smoke.table
    assert set(t["scale"]) == {"smoke"}
    [reference] = set(t["reference_method"])
    for method in {a.info["reference_method"] for a in smoke.carbon} | {smoke.frame.info["reference_method"]}:
        assert method in reference
    assert "DFT" not in reference
    n_added = list(smoke.exp.n_added)
    assert n_added == [1, 2]  # config/sizes/experiment/fig5_active_learning/smoke.yaml
    constructions = list(smoke.exp.constructions)
    assert constructions == ["paper", "tight"]  # config/experiment/fig5_active_learning.yaml
    assert sorted(map(tuple, t[["construction", "strategy", "n_added"]].to_numpy().tolist())) == sorted(
        (c, s, n) for c in constructions for s in fig5.STRATEGIES for n in ([1] if s == "diamond" else n_added))
    assert (t["frame_atoms"] == len(smoke.frame)).all()
    assert (t["n_covariance"] == len(smoke.carbon)).all()  # smoke rows: all


def test_covariance_is_the_sum_of_the_mean_rows_of_its_structures(smoke):
    G = covariance_rows(smoke)
    assert np.allclose(G[:, 0], 1.0)  # composition column of a mean: 1
    H = numpy_H(smoke)
    np.testing.assert_allclose(smoke.h.matrix, H, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    assert smoke.h.n_rows == len(smoke.carbon) and smoke.h.metadata["n_shards"] == 2  # the smoke scale shards it


def test_covariance_of_random_rows_follows_the_run_key(smoke):
    """rows n<N>-s<k>: the first N of RandomState(k).permutation, sorted (the paper's np.random.seed(123) draw)."""
    from experiments import hessian

    inputs = {"data/carbon": smoke.inputs.get("data/carbon") or str(smoke.runner.build("data/carbon"))}
    h = hessian.accumulate(smoke.runner.cfg("model=le_ace_local", "dataset=carbon", "rows=n6-s123", inputs=inputs))
    cov = np.sort(np.random.RandomState(123).permutation(len(smoke.carbon))[:6])
    G = np.array([mean_atom_rows(smoke.ace, smoke.carbon[i]) for i in cov])
    want = G.T @ G + float(smoke.model.rigidity.regularizer) * np.eye(G.shape[1])
    np.testing.assert_allclose(h.matrix, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_target_is_the_least_rigid_atom_by_a_numpy_rebuild(smoke):
    F = smoke.F_frame
    assert F.shape == (len(smoke.frame), smoke.h.n_features) and np.all(F[:, 0] == 1.0)
    lpr = 1.0 / quad(numpy_H(smoke), F)
    assert smoke.target == int(np.argmin(lpr))
    assert np.sort(lpr)[1] > lpr.min() * (1 + 1e-6)  # a unique minimum: the target is well defined
    t = smoke.table
    np.testing.assert_allclose(t["lpr_before"], lpr.min(), rtol=1e-6)
    np.testing.assert_allclose(t["frame_lpr_median"], np.median(lpr), rtol=1e-6)


def test_added_features_are_those_of_the_built_structures(smoke):
    assert list(smoke.features) == list(smoke.built) == ["paper", "tight"]
    for construction, built in smoke.built.items():
        D = smoke.features[construction]
        for name in ("original", "carving", "periodic", "high_symmetry", "diamond"):
            G = np.array([mean_atom_rows(smoke.ace, a) for a in built[name]])
            np.testing.assert_allclose(D[f"G_{name}"], G, rtol=1e-10, atol=1e-12, err_msg=f"{construction} {name}")
            np.testing.assert_array_equal(D[f"n_atoms_{name}"], [len(a) for a in built[name]])
        np.testing.assert_allclose(D["G_original"][0], smoke.F_frame.mean(axis=0), rtol=1e-12)
        # a perfect crystal: the diamond supercell's mean row is any of its atoms' rows
        A, _ = le_ace.atom_features(smoke.ace, built["diamond"])
        np.testing.assert_allclose(A, np.repeat(A[:1], len(A), axis=0), rtol=1e-9, atol=1e-12)


def test_lpr_enhancements_match_a_numpy_rebuild(smoke):
    t = smoke.table
    H = numpy_H(smoke)
    f, g = smoke.F_frame[smoke.target], smoke.F_frame.mean(axis=0)
    lpr0, pr0 = 1.0 / quad(H, f)[0], 1.0 / quad(H, g)[0]
    for _, row in t.iterrows():
        c, s, n = row["construction"], row["strategy"], int(row["n_added"])
        sizes = {k: [len(a) for a in v] for k, v in smoke.built[c].items()}
        V = added(smoke, c, s, n)
        H1 = H + V.T @ V
        lpr1 = 1.0 / quad(H1, f)[0]
        assert row["lpr_before"] == pytest.approx(lpr0, rel=1e-6)
        assert row["lpr_after"] == pytest.approx(lpr1, rel=1e-6), (s, n)
        assert row["lpr_enhancement_percent"] == pytest.approx(100 * (lpr1 / lpr0 - 1), rel=1e-6), (c, s, n)
        assert row["frame_pr_ratio"] == pytest.approx((1.0 / quad(H1, g)[0]) / pr0, rel=1e-6), (c, s, n)
        atoms = n * sizes[s][0] if s in ("original", "carving", "diamond") else sum(sizes[s][:n])
        atoms += sizes["diamond"][0] if s == "high_symmetry" else 0
        assert row["atoms_added"] == atoms, (s, n)


def test_enhancements_are_non_negative_and_grow_with_the_data(smoke):
    t = smoke.table
    assert (t["lpr_enhancement_percent"] >= 0).all()
    assert (t["lpr_after"] >= t["lpr_before"] * (1 - 1e-12)).all()
    for s, g in t.groupby(["construction", "strategy"]):
        e = g.sort_values("n_added")["lpr_enhancement_percent"].to_numpy()
        assert np.all(np.diff(e) >= -1e-9 * np.abs(e[:-1])), s
    # the paper's finding at any scale: one carved cluster of the target helps its LPR more than the whole frame
    one = t[t["n_added"] == 1].set_index(["construction", "strategy"])["lpr_enhancement_percent"]
    for c in ("paper", "tight"):
        assert one[(c, "carving")] > one[(c, "original")]
        # adding an HS embedding to the diamond cell can only raise the LPR (H grows by a positive term)
        assert one[(c, "high_symmetry")] >= one[(c, "diamond")] * (1 - 1e-9)
    # the shared structures are the same under both constructions
    for s in ("original", "carving", "diamond"):
        assert one[("paper", s)] == pytest.approx(one[("tight", s)], rel=1e-9), s


def test_environment_check_and_stored_structures_keep_the_target_environment(smoke):
    import ase.io

    check = smoke.check
    assert set(check) == {"carving"} | {f"{k}/{c}" for k in ("periodic", "high_symmetry") for c in ("paper", "tight")}
    assert all(0 <= v < 1e-8 for v in check.values())
    path = smoke.outputs["structures"]
    stored = ase.io.read(path, ":")
    assert len(stored) == 2 + 3 * 2  # frame, cluster, then periodic, HS and diamond of each construction
    frame, cluster = stored[:2]
    np.testing.assert_allclose(frame.positions, smoke.frame.positions, atol=1e-6)
    assert cluster.info.get("embedding") == "cluster" and not cluster.pbc.any()
    target = smoke.target
    assert int(cluster.info["centre_index"]) == target
    cutoff, radius = float(smoke.model.descriptor.cutoff), float(smoke.exp.environment_radius)
    for k, construction in enumerate(("paper", "tight")):
        periodic, hs, diamond = stored[2 + 3 * k: 5 + 3 * k]
        assert [a.info.get("embedding") for a in (periodic, hs, diamond)] == [
            "periodic", "high_symmetry", "high_symmetry_pure"]
        assert {a.info["construction"] for a in (periodic, hs, diamond)} == {construction}
        assert periodic.pbc.all() and hs.pbc.all()
        assert len(diamond) == 8 * int(diamond.info["supercell"]) ** 3  # pure diamond: 8 atoms per cubic cell
        for r in (cutoff, radius):
            ref = neighbour_distances(frame, target, r)
            assert len(ref) > 4
            for name, atoms in (("carving", cluster), ("periodic", periodic), ("high_symmetry", hs)):
                got = neighbour_distances(atoms, 0, r)
                assert len(got) == len(ref), (construction, name, r)
                np.testing.assert_allclose(got, ref, atol=1e-6, err_msg=f"{construction} {name}, r={r}")
        # the stored structures are the ones the documented seeds rebuild
        built = smoke.built[construction]
        for name, atoms in (("carving", cluster), ("periodic", periodic), ("high_symmetry", hs), ("diamond", diamond)):
            np.testing.assert_allclose(atoms.positions, built[name][0].positions, atol=1e-6, err_msg=name)


def test_constructions_follow_their_rules(smoke):
    """paper: the cube edge 2 r + d + 1.5 sigma and the diamond carved to r + d + 1.5 sigma; tight: the project's."""
    from scipy.spatial.distance import cdist

    exp, t = smoke.exp, smoke.table.set_index("construction")
    r, d, sigma = float(exp.environment_radius), float(exp.min_distance), float(exp.sigma)
    paper, tight = smoke.built["paper"], smoke.built["tight"]
    for p in paper["periodic"]:
        assert p.info["cell_edge"] == pytest.approx(2 * r + d + 1.5 * sigma)  # 8.8 A at the paper's values
    for p in tight["periodic"]:
        assert 2 * r - 1e-9 <= p.info["cell_edge"] < 2 * r + d + 1.5 * sigma + 5.0
    assert np.allclose(t.loc["paper", "periodic_cell_edge"], 2 * r + d + 1.5 * sigma)
    for built, radius in ((paper, r + d + 1.5 * sigma), (tight, r)):
        hs, pure = built["high_symmetry"][0], built["diamond"][0]
        edge = hs.info["cell_edge"]
        # the diamond sites kept: exactly those outside the carve radius (brute force over the 27 images) ...
        shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) * edge
        d_centre = np.linalg.norm(pure.positions[:, None] + shifts[None] - edge / 2, axis=-1).min(axis=1)
        inserted = hs.positions[hs.arrays["original_index"] >= 0]
        d_ins = cdist(pure.positions, (inserted[:, None] + shifts[None]).reshape(-1, 3)).min(axis=1)
        kept = (d_centre >= radius - 1e-5) & (d_ins >= d)
        assert len(hs) == len(inserted) + int(kept.sum()), radius
        assert hs.info["n_removed"] == int((~kept).sum())
        np.testing.assert_allclose(t.loc[hs.info["construction"], "hs_atoms"], len(hs))
    assert paper["high_symmetry"][0].info["carve_radius"] == pytest.approx(r + d + 1.5 * sigma)  # 5.05 A


def environment_vectors(atoms, centre, r):
    from ase.neighborlist import neighbor_list

    i, D = neighbor_list("iD", atoms, r)
    return D[i == centre]


def same_vectors(A, B, atol=1e-8):
    if len(A) != len(B):
        return False
    d = np.linalg.norm(A[:, None, :] - B[None, :, :], axis=-1)
    return bool(np.all(d.min(axis=1) < atol) and np.all(d.min(axis=0) < atol))


def test_periodic_embeddings_differ_in_the_buffer_only(smoke):
    p0, p1 = smoke.built["paper"]["periodic"][:2]
    radius = float(smoke.exp.environment_radius)
    ref = environment_vectors(smoke.frame, smoke.target, radius)
    for p in (p0, p1):
        assert same_vectors(environment_vectors(p, 0, radius), ref)
        assert p.arrays["buffer"].sum() > 0
    # same cube, hence the same atoms in the same order, but fresh buffer displacements
    np.testing.assert_array_equal(p0.arrays["original_index"], p1.arrays["original_index"])
    env = ~p0.arrays["buffer"]
    np.testing.assert_array_equal(env, ~p1.arrays["buffer"])
    rel0 = p0.positions - p0.positions[0]
    rel1 = p1.positions - p1.positions[0]
    np.testing.assert_allclose(rel0[env], rel1[env], atol=1e-10)
    buf = p0.arrays["buffer"]

    def buffer_vectors(a):  # minimum-image vectors from the target (cubic cells)
        c = a.cell.lengths()[0]
        v = a.positions[buf] - a.positions[0]
        return v - c * np.round(v / c)

    moved = np.linalg.norm(buffer_vectors(p0) - buffer_vectors(p1), axis=1)
    assert np.median(moved) > 0.05  # sigma = 0.2 A per coordinate in each embedding
    # HS embeddings: same idea, the inserted environment fixed
    h0, h1 = smoke.built["paper"]["high_symmetry"][:2]
    assert same_vectors(environment_vectors(h0, 0, radius), ref)
    assert same_vectors(environment_vectors(h1, 0, radius), ref)
    assert not np.allclose(h0.positions, h1.positions, atol=1e-3)
    # the rebuild is deterministic: the seeds are the experiment's
    import dataclasses

    again = fig5.build_structures(smoke.frame, smoke.target, dataclasses.replace(smoke.exp, n_added=[1, 2]))
    np.testing.assert_array_equal(again["paper"]["periodic"][1].positions, p1.positions)


def test_added_rows_follow_each_strategy(rng):
    d = 5
    data = {"G_original": rng.normal(size=(1, d)), "G_carving": rng.normal(size=(1, d)),
            "G_periodic": rng.normal(size=(3, d)), "G_high_symmetry": rng.normal(size=(3, d)),
            "G_diamond": rng.normal(size=(1, d))}
    for s in ("original", "carving"):
        rows, w = fig5.added_rows(data, s, 7)
        np.testing.assert_array_equal(rows, data[f"G_{s}"])
        np.testing.assert_array_equal(w, [7.0])
    rows, w = fig5.added_rows(data, "periodic", 2)
    np.testing.assert_array_equal(rows, data["G_periodic"][:2])
    np.testing.assert_array_equal(w, [1.0, 1.0])
    for n in (1, 3):
        rows, w = fig5.added_rows(data, "high_symmetry", n)
        np.testing.assert_array_equal(rows, np.vstack([data["G_high_symmetry"][:n], data["G_diamond"]]))
        np.testing.assert_array_equal(w, np.ones(n + 1))
    with pytest.raises(ValueError, match="4 periodic structures asked for, 3 built"):
        fig5.added_rows(data, "periodic", 4)
    with pytest.raises(ValueError, match="5 high_symmetry structures asked for, 3 built"):
        fig5.added_rows(data, "high_symmetry", 5)
    rows, w = fig5.added_rows(data, "diamond", 1)
    np.testing.assert_array_equal(rows, data["G_diamond"])
    np.testing.assert_array_equal(w, [1.0])
    with pytest.raises(ValueError, match="the diamond cell alone is one structure, 2 asked for"):
        fig5.added_rows(data, "diamond", 2)


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"environment_radius = 3.0 A is below the model cutoff 3.7 A"):
        fig5.check(compose(BASE + ["experiment.environment_radius=3.0"]))
    with pytest.raises(ValueError, match="n_added must be increasing"):
        fig5.check(compose(BASE + ["experiment.n_added=[2,1]"]))
    with pytest.raises(ValueError, match="n_added must be increasing"):
        fig5.check(compose(BASE + ["experiment.n_added=[0,1]"]))
    with pytest.raises(ValueError, match=r"constructions.paper.periodic_cell must be one of .* got 'tiny'"):
        fig5.check(compose(BASE + ["experiment.constructions.paper.periodic_cell=tiny"]))
    with pytest.raises(ValueError, match=r"constructions.tight.hs_carve_radius must be .* got 'big'"):
        fig5.check(compose(BASE + ["experiment.constructions.tight.hs_carve_radius=big"]))
    with pytest.raises(ValueError, match=r"hs_carve_radius = 3.0 A is below experiment.environment_radius"):
        fig5.check(compose(BASE + ["experiment.constructions.tight.hs_carve_radius='3.0'"]))
    fig5.check(compose(BASE + ["experiment.constructions.tight.hs_carve_radius='5.5'"]))  # a radius in A
    cfg = compose(BASE)
    assert cfg.model.descriptor.cutoff == 3.7 and list(cfg.experiment.n_added) == [1, 2]
    fig5.check(compose(BASE + ["experiment.environment_radius=3.7"]))  # equal to the cutoff is allowed


def test_a_positions_only_frame_is_enough(smoke, tmp_path):
    """The paper's frame (source=file) has no energies or forces: the stages need positions only."""
    from ase import Atoms

    from experiments import analyse, features
    from experiments._results import save_features

    bare = Atoms(smoke.frame.numbers, smoke.frame.positions, cell=smoke.frame.cell, pbc=True)
    bare.info.update(reference_method="none (positions only)", subset="liquid")
    liquid = tmp_path / "carbon_liquid.extxyz"
    write_frames([bare], liquid)
    atoms = tmp_path / "atoms.npz"
    save_features(features.run(smoke.runner.cfg("model=le_ace_local", "dataset=carbon_liquid", "kind=atoms",
                                                inputs={"data/carbon_liquid": str(liquid)})), atoms)
    inputs = dict(smoke.inputs, **{"data/carbon_liquid": str(liquid),
                                   "features/le_ace_local/carbon_liquid/atoms": str(atoms)})
    out = analyse.analysis(smoke.cfg)(smoke.runner.cfg(f"experiment={NAME}", inputs=inputs))
    t = out["table"].data
    assert (t["target_atom"] == smoke.target).all()  # same positions, same least rigid atom
    assert "none (positions only)" in out["table"].reference_method


def test_analysis_refuses_features_of_another_descriptor(smoke):
    cfg = smoke.runner.cfg(f"experiment={NAME}", "model.descriptor.cutoff=3.6", inputs=smoke.inputs)
    with pytest.raises(ValueError, match="rerun"):
        fig5.analyse(cfg)
