"""Figure 4 stages (PR-guided augmentation of a bulk-only LE-ACE carbon model): the ridge helpers of
experiments/models/le_ace.py, the training-set roles, and a smoke run of features, analysis and figure whose table
is checked against numpy rebuilds of the PR, of the greedy picks and of the validated ridge fits."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import Runner, compose

pytest.importorskip("tblite")

from experiments import fig4_pr_augmentation as fig4  # noqa: E402
from experiments._results import load_features  # noqa: E402
from experiments._stage import typed  # noqa: E402
from experiments.datasets.io import read_frames  # noqa: E402
from experiments.models import le_ace as _le_ace  # noqa: E402

NAME = "fig4_pr_augmentation"
BASE = [f"experiment={NAME}", "scale=smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig4_smoke")
    runner = Runner(root)
    run = runner.experiment(NAME)
    cfg = runner.cfg(f"experiment={NAME}", inputs=run["inputs"])
    exp, model = typed(cfg.experiment), typed(cfg.model)
    data = run["inputs"]["data/carbon"]
    features = fig4.inputs(cfg, exp)  # the analysis' own view of its inputs, by role
    return SimpleNamespace(root=root, runner=runner, cfg=cfg, inputs=run["inputs"], data=data,
                           frames=read_frames(data), exp=exp, model=model, features=features,
                           feature_file=load_features(run["inputs"]["features/le_ace/carbon/structures"]),
                           table=pd.read_csv(run["outputs"]["table"]), table_path=run["outputs"]["table"],
                           summary=pd.read_csv(run["outputs"]["summary"]), pdf=run["pdf"])


# ----------------------------------------------------------------------------------------------
# helpers: independent numpy rebuilds


def rms_scales(X):
    rms = np.sqrt((X**2).mean(axis=0))
    return np.where(rms > 0, rms, 1.0)


def numpy_prs(Xs, rows, targets, reg):
    """PR_t = 1 / (x_t^T H^-1 x_t), H = Xs[rows]^T Xs[rows] + reg I, by an LU solve."""
    A = Xs[rows]
    H = A.T @ A + reg * np.eye(Xs.shape[1])
    T = Xs[targets]
    return 1.0 / np.einsum("ij,ji->i", T, np.linalg.solve(H, T.T))


def grid(fit):
    return np.logspace(np.log10(float(fit.alpha_min)), np.log10(float(fit.alpha_max)), int(fit.n_alphas))


def row_orders(smoke):
    """(draw, strategy, seed) -> feature rows added, in order, read back from the table's added_frame column."""
    row_of_frame = {int(f): r for r, f in enumerate(smoke.features["frame_index"])}
    out = {}
    for (draw, strategy, seed), g in smoke.table.groupby(["draw", "strategy", "seed"]):
        g = g.sort_values("n_added")
        frames = g["added_frame"].to_numpy()[1:]
        out[(int(draw), strategy, int(seed))] = np.array([row_of_frame[int(f)] for f in frames], dtype=int)
    return out


def curve(smoke, draw, strategy, seed):
    t = smoke.table
    return t[(t["draw"] == draw) & (t["strategy"] == strategy) & (t["seed"] == seed)].sort_values("n_added")


# ----------------------------------------------------------------------------------------------
# experiments/models/le_ace.py


def test_total_degrees_drops_order_zero_and_trailing_zeros():
    assert _le_ace.total_degrees([0, 1000, 300, 200, 100]) == [1000.0, 300.0, 200.0, 100.0]
    assert _le_ace.total_degrees([0, 300, 100, 0]) == [300.0, 100.0]
    assert _le_ace.total_degrees([0, 300, 0, 0]) == [300.0]
    assert _le_ace.total_degrees((0.0, 12.5)) == [12.5]


@pytest.mark.parametrize("E_max, shown", [
    ([1, 300, 100], "[1, 300, 100]"),  # does not start with the composition's 0
    ([0, 300, 0, 100], "[0, 300, 0, 100]"),  # a zero inside: only trailing zeros may drop orders
    ([0, 0, 0], "[0, 0, 0]"),  # no positive body order
    ([0, -5], "[0, -5]"),  # negative cut-off
    ([0], "[0]"),  # no body order at all
])
def test_total_degrees_rejects_bad_E_max_naming_it(E_max, shown):
    with pytest.raises(ValueError, match="E_max") as err:
        _le_ace.total_degrees(E_max)
    assert shown in str(err.value)


def ridge_problem(rng, n=15, n_val=25, d=12):
    """Total energies E = N e0 + X w + noise, with feature columns of very different scales."""
    col = np.logspace(-2, 3, d)
    X = rng.normal(size=(n, d)) * col
    Xv = rng.normal(size=(n_val, d)) * col
    w = rng.normal(size=d) / col
    N, Nv = rng.integers(8, 64, size=n).astype(float), rng.integers(8, 64, size=n_val).astype(float)
    E = -7.3 * N + X @ w + 1.5 * rng.normal(size=n)
    Ev = -7.3 * Nv + Xv @ w + 1.5 * rng.normal(size=n_val)
    return X, E, N, Xv, Ev, Nv


def test_fit_validated_is_the_ridge_of_normal_equations_with_the_best_validation_alpha(rng):
    X, E, N, Xv, Ev, Nv = ridge_problem(rng)
    scales = rms_scales(X)
    alphas = np.logspace(-4, 3, 15)
    fit = _le_ace.fit_validated(X, E, N, Xv, Ev, Nv, alphas[::-1].copy(), scales)  # order of the grid is irrelevant

    e0 = np.mean(E / N)
    Xs, y = X / scales, E - N * e0

    def ridge(alpha):
        return np.linalg.solve(Xs.T @ Xs + alpha * np.eye(X.shape[1]), Xs.T @ y)

    rmse = np.array([np.sqrt(np.mean((Nv * e0 + (Xv / scales) @ ridge(a) - Ev) ** 2)) for a in alphas])
    best = int(np.argmin(rmse))
    assert 0 < best < len(alphas) - 1  # an interior optimum: the choice is not trivially an end of the grid
    assert np.sort(rmse)[1] > rmse[best] * (1 + 1e-6)  # and a unique one
    assert fit.alpha == pytest.approx(alphas[best], rel=1e-12)
    assert fit.e0 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(fit.scales, scales)
    np.testing.assert_allclose(fit.weights, ridge(fit.alpha), rtol=1e-7, atol=1e-10 * np.abs(ridge(fit.alpha)).max())
    assert fit.validation_rmse == pytest.approx(rmse[best], rel=1e-8)
    np.testing.assert_allclose(fit.predict(Xv, Nv), Nv * e0 + (Xv / scales) @ ridge(fit.alpha), rtol=1e-9)


def test_fit_validated_ties_go_to_the_largest_alpha(rng):
    X, E, N, _, _, _ = ridge_problem(rng)
    # zero validation features: every alpha predicts N e0 there, so all validation RMSEs tie
    Nv = np.array([10.0, 20.0, 30.0])
    fit = _le_ace.fit_validated(X, E, N, np.zeros((3, X.shape[1])), -7.0 * Nv, Nv, [1e-3, 10.0, 0.1], rms_scales(X))
    assert fit.alpha == 10.0


@pytest.mark.parametrize("alphas", [[], [1e-3, -1.0], [0.0, 1.0]])
def test_fit_validated_rejects_non_positive_or_missing_alphas(rng, alphas):
    X, E, N, Xv, Ev, Nv = ridge_problem(rng)
    with pytest.raises(ValueError, match="alphas must be positive"):
        _le_ace.fit_validated(X, E, N, Xv, Ev, Nv, alphas, rms_scales(X))


def test_fit_validated_needs_training_and_validation_structures(rng):
    X, E, N, Xv, Ev, Nv = ridge_problem(rng)
    with pytest.raises(ValueError, match="got 15 and 0"):
        _le_ace.fit_validated(X, E, N, Xv[:0], Ev[:0], Nv[:0], [1.0], rms_scales(X))


# ----------------------------------------------------------------------------------------------
# roles of the structures


def test_roles_of_the_smoke_carbon_set_follow_the_flags_and_hold_out_whole_runs(smoke):
    frames = smoke.frames
    r = fig4.roles(frames, 0.2, 7)
    split = np.array([a.info["split"] for a in frames])
    run = np.array([int(a.info["run"]) for a in frames])
    fit, val = set(r["fit"].tolist()), set(r["validation"].tolist())
    assert fit and val and not fit & val
    assert fit | val == set(np.flatnonzero(split == "train").tolist())
    assert not set(run[list(fit)]) & set(run[list(val)])  # no MD run on both sides
    # the targets come from MD runs that supply no fitted, validation or candidate structure
    bulk_runs = set(run[np.concatenate([r["fit"], r["validation"], r["candidates"], r["low_density"]])].tolist())
    assert not set(run[r["targets"]].tolist()) & bulk_runs
    assert set(r["candidates"].tolist()) == {i for i, a in enumerate(frames) if a.info["split"] == "candidate"}
    assert set(r["targets"].tolist()) == {i for i, a in enumerate(frames) if a.info["split"] == "target"}
    assert set(r["low_density"].tolist()) == {i for i, a in enumerate(frames) if a.info["low_density"]
                                              and a.info["subset"] == "bulk" and a.info["split"] != "train"}
    for i in r["low_density"]:
        assert frames[i].info["density"] < 2.0
    for i in r["targets"]:
        assert frames[i].info["subset"] == "surface"
    # the analysis sees the same roles, draw by draw
    fi, fit_cfg = smoke.features["frame_index"], smoke.model.fit
    assert len(smoke.features["draws"]) == smoke.exp.n_draws
    for d, rows in enumerate(smoke.features["draws"]):
        for k, v in fig4.roles(frames, fit_cfg.validation_fraction, fit_cfg.validation_seed, d).items():
            assert sorted(fi[rows[k]].tolist()) == sorted(v.tolist()), (d, k)


def _atoms(split, run=None, subset="bulk", low=False):
    from ase import Atoms

    a = Atoms("C", positions=[[0, 0, 0]])
    a.info.update(split=split, subset=subset, low_density=low)
    if run is not None:
        a.info["run"] = run
    return a


def test_roles_without_md_runs_treat_every_structure_as_its_own_group():
    frames = ([_atoms("train") for _ in range(10)] + [_atoms("candidate", low=True), _atoms("target", subset="surface")]
              + [_atoms("unused", low=True)])
    r = fig4.roles(frames, 0.2, 3)
    assert len(r["validation"]) == 2 and len(r["fit"]) == 8  # round(0.2 * 10) groups of one structure
    assert sorted(np.concatenate([r["fit"], r["validation"]]).tolist()) == list(range(10))
    assert r["low_density"].tolist() == [10, 12]  # bulk, low density, not train (unused ones included)
    # same seed, same hold-out; the hold-out moves with the seed
    assert fig4.roles(frames, 0.2, 3)["validation"].tolist() == r["validation"].tolist()
    assert any(fig4.roles(frames, 0.2, s)["validation"].tolist() != r["validation"].tolist() for s in range(4, 10))


def test_roles_draws_are_the_folds_of_repeated_k_fold_over_runs():
    runs = [k for k in range(11) for _ in range(3)]  # 11 runs of 3 structures: n_val = round(2.2) = 2, K = 5
    frames = [_atoms("train", run=k) for k in runs] + [_atoms("candidate", low=True), _atoms("target", "surface")]
    run = np.array(runs)

    def held(d, seed=7):
        r = fig4.roles(frames, 0.2, seed, d)
        assert sorted(np.concatenate([r["fit"], r["validation"]]).tolist()) == list(range(len(runs)))
        v = set(run[r["validation"]].tolist())
        assert not v & set(run[r["fit"]].tolist())
        assert all(np.sum(run[r["validation"]] == k) == 3 for k in v)  # whole runs
        return v

    for repeat in range(2):
        folds = [held(5 * repeat + f) for f in range(5)]
        assert all(len(v) == 2 for v in folds)
        assert len(set().union(*folds)) == 10  # disjoint: 10 of the 11 runs validate once, one (the remainder) never
    assert [held(d) for d in range(5)] != [held(d) for d in range(5, 10)]  # a fresh permutation per repeat
    assert held(3) == held(3) and [held(d, 8) for d in range(5)] != [held(d) for d in range(5)]
    with pytest.raises(ValueError, match="draw must be a non-negative integer, got -1"):
        fig4.roles(frames, 0.2, 7, -1)


def test_roles_refuse_a_training_split_from_one_run():
    frames = [_atoms("train", run=4) for _ in range(5)] + [_atoms("candidate", low=True), _atoms("target", "surface")]
    with pytest.raises(ValueError, match="come from 1 MD run"):
        fig4.roles(frames, 0.2, 7)
    with pytest.raises(ValueError, match="no targets"):
        fig4.roles([_atoms("train", run=k) for k in range(3)] + [_atoms("candidate", low=True)], 0.2, 7)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="validation_fraction"):
        fig4.check(compose(BASE + ["model.fit.validation_fraction=1.0"]))
    with pytest.raises(ValueError, match="pr_regularizer"):
        fig4.check(compose(BASE + ["experiment.pr_regularizer=0"]))
    with pytest.raises(ValueError, match="experiment.n_draws must be a positive integer, got 0"):
        fig4.check(compose(BASE + ["experiment.n_draws=0"]))
    with pytest.raises(ValueError, match="alpha_min"):
        fig4.check(compose(BASE + ["model.fit.alpha_min=1e4"]))
    with pytest.raises(ValueError, match=r"\[0.0, 100.0, 0.0, 50.0\]"):
        fig4.check(compose(BASE + ["model.descriptor.E_max=[0,100,0,50]"]))
    cfg = compose(BASE)
    fig4.check(cfg)
    assert (cfg.experiment.n_picks, cfg.experiment.n_random_seeds, cfg.experiment.n_draws) == (3, 2, 2)


# ----------------------------------------------------------------------------------------------
# the smoke run


def test_smoke_run_writes_table_and_figure(smoke):
    assert smoke.pdf.is_file() and smoke.pdf.with_suffix(".png").is_file()
    t = smoke.table
    assert set(t["scale"]) == {"smoke"}
    frame_methods = {a.info["reference_method"] for a in smoke.frames}
    assert frame_methods == {"GFN1-xTB"}
    assert set(t["reference_method"]) == frame_methods == {smoke.feature_file.meta["reference_method"]}
    assert not t["reference_method"].str.contains("DFT").any()
    assert set(t["rmse_per_atom_unit"]) == {"eV/atom"} and set(t["rmse_total_unit"]) == {"eV"}
    assert set(t["construction"]) == {fig4.CONSTRUCTION}
    n_picks, n_seeds, n_draws = smoke.exp.n_picks, smoke.exp.n_random_seeds, smoke.exp.n_draws
    assert (n_picks, n_seeds, n_draws) == (3, 2, 2)  # config/sizes/experiment/fig4_pr_augmentation/smoke.yaml
    expected = {}
    for d, rows in enumerate(smoke.features["draws"]):
        expected[(d, "pr_guided", 0)] = min(n_picks, len(rows["candidates"]))
        for s in range(n_seeds):
            expected[(d, "random", s)] = min(n_picks, len(rows["candidates"]))
            expected[(d, "random_low_density", s)] = min(n_picks, len(rows["low_density"]))
        g = t[t["draw"] == d]
        assert (g["n_fit"] == len(rows["fit"])).all() and (g["n_validation"] == len(rows["validation"])).all()
        assert (g["n_targets"] == len(rows["targets"])).all()
        # before any addition every strategy of a draw has the same training set, hence the same numbers
        zero = g[g["n_added"] == 0]
        for column in ("mean_pr", "min_pr", "rmse_total", "rmse_per_atom", "alpha", "validation_rmse"):
            assert zero[column].nunique() == 1, (d, column)
        assert (zero["added_frame"] == -1).all()
    got = {(int(d), k, int(s)): sorted(g["n_added"]) for (d, k, s), g in t.groupby(["draw", "strategy", "seed"])}
    assert got == {k: list(range(n + 1)) for k, n in expected.items()}
    assert len(t) == sum(n + 1 for n in expected.values())
    # the two draws validate on different runs, so their fits differ
    assert t[t["n_added"] == 0].groupby("draw")["rmse_total"].first().nunique() == n_draws


def test_features_are_the_summed_atom_features_with_the_atom_count(smoke):
    """X, rebuilt frame by frame from per-atom features: column 0 the atom count, the rest the sums."""
    ace = _le_ace.descriptor(smoke.model)
    F = smoke.features
    rebuilt = []
    for i in F["frame_index"]:
        A, _ = _le_ace.atom_features(ace, [smoke.frames[int(i)]])
        rebuilt.append(A.sum(axis=0))
    np.testing.assert_allclose(F["X"], np.array(rebuilt), rtol=1e-10, atol=1e-12)
    assert F["X"].shape[1] == max(b for _, b in smoke.feature_file.blocks.values())
    assert smoke.feature_file.blocks["nu=0"] == (0, 1)
    np.testing.assert_array_equal(F["n_atoms"], [len(smoke.frames[int(i)]) for i in F["frame_index"]])
    np.testing.assert_array_equal(F["energy"], [smoke.frames[int(i)].info["energy"] for i in F["frame_index"]])


def test_orders_come_from_their_pools_without_repeats(smoke):
    F = smoke.features
    for (draw, strategy, seed), order in row_orders(smoke).items():
        rows = F["draws"][draw]
        pool = rows["low_density"] if strategy == "random_low_density" else rows["candidates"]
        assert len(set(order.tolist())) == len(order)
        assert set(order.tolist()) <= set(pool.tolist())
        g = curve(smoke, draw, strategy, seed)
        np.testing.assert_allclose(g["added_density"].to_numpy()[1:], F["density"][order], rtol=1e-9)


def test_mean_and_min_pr_of_every_row_match_a_numpy_rebuild(smoke):
    F, exp = smoke.features, smoke.exp
    reg = float(exp.pr_regularizer)
    for (draw, strategy, seed), order in row_orders(smoke).items():
        rows = F["draws"][draw]
        Xs = F["X"] / rms_scales(F["X"][rows["fit"]])
        for k, (_, row) in enumerate(curve(smoke, draw, strategy, seed).iterrows()):
            pr = numpy_prs(Xs, np.concatenate([rows["fit"], order[:k]]), rows["targets"], reg)
            assert row["mean_pr"] == pytest.approx(pr.mean(), rel=1e-6), (draw, strategy, seed, k)
            assert row["min_pr"] == pytest.approx(pr.min(), rel=1e-6), (draw, strategy, seed, k)


def test_greedy_objective_is_the_mean_pr_recomputed_from_scratch(smoke):
    assert smoke.table[smoke.table["strategy"] != "pr_guided"]["greedy_objective"].isna().all()
    for d in range(smoke.exp.n_draws):
        g = curve(smoke, d, "pr_guided", 0)
        assert np.isnan(g["greedy_objective"].iloc[0])
        np.testing.assert_allclose(g["greedy_objective"].to_numpy()[1:], g["mean_pr"].to_numpy()[1:], rtol=1e-6)


@pytest.mark.parametrize("draw", [0, 1])
def test_pr_guided_picks_are_greedy_by_brute_force(smoke, draw):
    F, exp, t = smoke.features, smoke.exp, smoke.table
    rows = F["draws"][draw]
    Xs = F["X"] / rms_scales(F["X"][rows["fit"]])
    reg, fit, targets = float(exp.pr_regularizer), rows["fit"], rows["targets"]
    order = row_orders(smoke)[(draw, "pr_guided", 0)]
    for k, pick in enumerate(order):
        chosen = list(order[:k])
        scores = {int(c): numpy_prs(Xs, np.concatenate([fit, chosen, [c]]).astype(int), targets, reg).mean()
                  for c in rows["candidates"] if c not in chosen}
        assert scores[int(pick)] >= max(scores.values()) * (1 - 1e-9), k
    # after one pick, no random candidate order does better
    one = t[(t["n_added"] == 1) & (t["draw"] == draw)].set_index(["strategy", "seed"])["mean_pr"]
    single = [numpy_prs(Xs, np.concatenate([fit, [c]]), targets, reg).mean() for c in rows["candidates"]]
    assert one[("pr_guided", 0)] == pytest.approx(max(single), rel=1e-6)
    for seed in range(int(exp.n_random_seeds)):
        assert one[("pr_guided", 0)] >= one[("random", seed)] * (1 - 1e-9)
    # adding data never lowers a PR: the greedy curve rises
    rising = curve(smoke, draw, "pr_guided", 0)["mean_pr"].to_numpy()
    assert np.all(rising[1:] >= rising[:-1] * (1 - 1e-9))


def test_rmse_columns_match_a_brute_force_validated_ridge(smoke):
    """Every row's model, refitted with an independent dual-form ridge over the same alpha grid."""
    F = smoke.features
    X, E, N = F["X"], F["energy"], F["n_atoms"].astype(float)
    alphas = grid(smoke.model.fit)

    def validated(rows):
        e0 = np.mean(E[rows] / N[rows])
        y = E[rows] - N[rows] * e0
        A = Xs[rows]
        fits = []
        for a in alphas:  # w = A^T (A A^T + a I)^-1 y: the same ridge, well conditioned with few rows
            w = A.T @ np.linalg.solve(A @ A.T + a * np.eye(len(rows)), y)
            v = np.sqrt(np.mean((N[val] * e0 + Xs[val] @ w - E[val]) ** 2))
            fits.append((v, a, e0, w))
        return fits

    for (draw, strategy, seed), order in row_orders(smoke).items():
        fit, val, targets = (F["draws"][draw][k] for k in ("fit", "validation", "targets"))
        Xs = X / rms_scales(X[fit])
        for k, (_, row) in enumerate(curve(smoke, draw, strategy, seed).iterrows()):
            fits = validated(np.concatenate([fit, order[:k]]))
            best = min(v for v, *_ in fits)
            i = int(np.argmin(np.abs(np.log(alphas / row["alpha"]))))
            assert row["alpha"] == pytest.approx(alphas[i], rel=1e-8)  # an alpha of the grid
            v, a, e0, w = fits[i]
            assert v <= best * (1 + 1e-8) and row["validation_rmse"] == pytest.approx(v, rel=1e-6)
            err = N[targets] * e0 + Xs[targets] @ w - E[targets]
            assert row["rmse_total"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-6), (draw, strategy, seed, k)
            assert row["rmse_per_atom"] == pytest.approx(np.sqrt(np.mean((err / N[targets]) ** 2)), rel=1e-6)


def test_n_added_0_row_is_the_validated_fit_of_the_dense_bulk(smoke):
    F = smoke.features
    X, E, N = F["X"], F["energy"], F["n_atoms"]
    for d, rows in enumerate(F["draws"]):
        fit, val, targets = rows["fit"], rows["validation"], rows["targets"]
        model = _le_ace.fit_validated(X[fit], E[fit], N[fit], X[val], E[val], N[val], grid(smoke.model.fit),
                                      rms_scales(X[fit]))
        err = model.predict(X[targets], N[targets]) - E[targets]
        row = curve(smoke, d, "pr_guided", 0).iloc[0]
        assert row["rmse_total"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-8)
        assert row["rmse_per_atom"] == pytest.approx(np.sqrt(np.mean((err / N[targets]) ** 2)), rel=1e-8)
        assert row["alpha"] == pytest.approx(model.alpha, rel=1e-8)


def test_analysis_refuses_features_of_another_descriptor(smoke):
    with pytest.raises(ValueError, match="rerun compute_features"):
        fig4.analyse(smoke.runner.cfg(f"experiment={NAME}", "model.descriptor.cutoff=4.0", inputs=smoke.inputs))


def test_summary_is_over_draws_of_seed_means_with_paired_differences(smoke):
    """The summary table, rebuilt from the curves by plain loops."""
    t, s = smoke.table, smoke.summary
    assert set(s["scale"]) == {"smoke"} and set(s["reference_method"]) == set(t["reference_method"])
    pd.testing.assert_frame_equal(fig4.summary(t).reset_index(drop=True),
                                  s.drop(columns=["scale", "reference_method"]), check_dtype=False)
    n_draws = smoke.exp.n_draws
    for quantity, unit in (("rmse_per_atom", "eV/atom"), ("rmse_total", "eV"), ("mean_pr", fig4.UNITS["mean_pr"])):
        for n in (1, 2):  # the smoke low-density pool has 2 structures
            value = {}
            for strategy in fig4.STRATEGIES:
                value[strategy] = np.array([t[(t["draw"] == d) & (t["strategy"] == strategy)
                                              & (t["n_added"] == n)][quantity].mean() for d in range(n_draws)])
                row = s[(s["quantity"] == quantity) & (s["strategy"] == strategy) & (s["n_added"] == n)]
                assert len(row) == 1 and row["unit"].iloc[0] == unit
                row = row.iloc[0]
                assert row["n_draws"] == n_draws
                assert row["mean"] == pytest.approx(value[strategy].mean(), rel=1e-8)
                assert row["std"] == pytest.approx(value[strategy].std(ddof=1), rel=1e-8)
                assert (row["min"], row["max"]) == pytest.approx((value[strategy].min(), value[strategy].max()))
            for strategy in fig4.STRATEGIES[1:]:
                diff = value[strategy] - value["pr_guided"]
                row = s[(s["quantity"] == quantity) & (s["strategy"] == f"{strategy} - pr_guided")
                        & (s["n_added"] == n)].iloc[0]
                assert row["mean"] == pytest.approx(diff.mean(), rel=1e-8, abs=1e-12)
                assert row["n_pr_lower"] == int(np.sum(diff > 0))
