"""The workflow's own machinery on small inputs: run keys, Hessian shards and their merge, code digests, the plan."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms
from conftest import compose

from experiments import hessian, workflow
from experiments.runs import RUN_PATTERN, parse_run, select


def frames(labels, key="subset"):
    return [Atoms("H", positions=[[0, 0, float(i)]], info={key: s}) for i, s in enumerate(labels)]


POOL_ALL = SimpleNamespace(pool=None, pool_key="subset", sets={}, sets_key="subset", sets_order=[], sets_seed=0)


# ----------------------------------------------------------------------------------------------
# run keys


@pytest.mark.parametrize("key, size, subset, name, seed", [
    ("all", None, None, None, None),
    ("n1000", 1000, None, None, None),
    ("n50-s3", 50, 3, None, None),
    ("n50-s0-seed7", 50, 0, None, 7),
    ("set2", None, None, "set2", None),
    ("all-seed1", None, None, None, 1),
])
def test_run_keys_parse(key, size, subset, name, seed):
    run = parse_run(key)
    assert (run.size, run.subset, run.name, run.seed) == (size, subset, name, seed)
    import re

    assert re.fullmatch(RUN_PATTERN, key)  # the Snakemake wildcard constraint accepts it


@pytest.mark.parametrize("key", ["n0", "n-5", "n10-s", "10", "n10_s3", "n10-seed", "all-s3x", "", "n10-s1-s2"])
def test_malformed_run_keys_are_refused_with_the_grammar(key):
    import re

    with pytest.raises(ValueError, match="is not one of all, n<N>, n<N>-s<k>"):
        parse_run(key)
    assert not re.fullmatch(RUN_PATTERN, key)


def test_n_selects_the_first_structures_of_the_pool_in_file_order():
    fr = frames(["train", "test", "train", "train", "validation", "train"])
    pool = SimpleNamespace(**{**vars(POOL_ALL), "pool": "train"})
    np.testing.assert_array_equal(select(fr, pool, "n3"), [0, 2, 3])
    np.testing.assert_array_equal(select(fr, pool, "all"), [0, 2, 3, 5])
    np.testing.assert_array_equal(select(fr, POOL_ALL, "n3"), [0, 1, 2])
    with pytest.raises(ValueError, match=r"run n5: 5 structures asked for, the training pool \(subset 'train'\) of "
                                         r"dataset has 4"):
        select(fr, pool, "n5")
    with pytest.raises(ValueError, match="no structure has info subset = 'training'"):
        select(fr, SimpleNamespace(**{**vars(POOL_ALL), "pool": "training"}), "all")


def test_random_subsets_follow_numpy_and_nest_by_subset_number():
    fr = frames(["train"] * 40)
    for k in (0, 3, 123):
        want = np.sort(np.random.RandomState(k).permutation(40)[:10])
        np.testing.assert_array_equal(select(fr, POOL_ALL, f"n10-s{k}"), want)
        assert set(select(fr, POOL_ALL, f"n5-s{k}")) < set(select(fr, POOL_ALL, f"n10-s{k}"))  # nested
    assert set(select(fr, POOL_ALL, "n10-s0")) != set(select(fr, POOL_ALL, "n10-s1"))  # independent draws
    # the seed suffix is the training seed: it does not change the rows
    np.testing.assert_array_equal(select(fr, POOL_ALL, "n10-s3-seed9"), select(fr, POOL_ALL, "n10-s3"))


def test_named_sets_are_unknown_until_the_dataset_names_them():
    with pytest.raises(ValueError, match="names no such training set"):
        select(frames(["a"] * 3), POOL_ALL, "set1")
    bad = SimpleNamespace(**{**vars(POOL_ALL), "sets": {"x": {"b": 1}}, "sets_order": ["a"]})
    with pytest.raises(ValueError, match=r"counts \['b'\], which are not in dataset.training.sets_order"):
        select(frames(["a", "b"]), bad, "x")


# ----------------------------------------------------------------------------------------------
# Hessian shards and their merge (the stage, on the smoke carbon set)


@pytest.fixture(scope="module")
def carbon(tmp_path_factory):
    pytest.importorskip("tblite")
    from experiments.data import run as make_dataset
    from experiments.datasets.io import write_frames

    path = tmp_path_factory.mktemp("carbon") / "carbon.extxyz"
    write_frames(make_dataset(compose(["dataset=carbon", "scale=smoke"])), path)
    return path


def shard_cfg(carbon, rows="all", shard=0, n=1, *extra):
    return compose(["model=le_ace_local", "dataset=carbon", "scale=smoke", f"rows={rows}", f"shard={shard}",
                    f"n_shards={n}", f"inputs={{data/carbon: {carbon}}}", *extra])


@pytest.mark.parametrize("n", [2, 3])
def test_merged_shards_equal_the_hessian_built_in_one_job(carbon, tmp_path, n):
    one = hessian.accumulate(shard_cfg(carbon))
    paths = []
    for k in range(n):
        paths.append(str(tmp_path / f"shard{k}of{n}.npz"))
        hessian.accumulate(shard_cfg(carbon, "all", k, n)).save(paths[-1])
    merged = hessian.merge(compose([f"inputs={{shards: [{','.join(paths)}]}}"]))
    scale = np.abs(one.matrix).max()
    assert np.abs(merged.matrix - one.matrix).max() <= 1e-12 * scale
    assert merged.n_rows == one.n_rows and merged.regularizer == one.regularizer == 1e-5
    # rigidities agree to what the condition number of H allows (here ~1e8: the order of the sum is not exact)
    G = np.random.default_rng(0).normal(size=(5, one.n_features))
    bound = 10 * np.finfo(float).eps * np.linalg.cond(one.matrix)
    np.testing.assert_allclose(merged.pr(G), one.pr(G), rtol=bound)
    assert merged.metadata["feature_set"] == one.metadata["feature_set"] and merged.metadata["n_shards"] == n
    assert "shard" not in merged.metadata


def test_a_shard_of_other_rows_a_missing_shard_or_a_truncated_file_is_refused(carbon, tmp_path):
    a, b, other = (str(tmp_path / f) for f in ("a.npz", "b.npz", "other.npz"))
    hessian.accumulate(shard_cfg(carbon, "all", 0, 2)).save(a)
    hessian.accumulate(shard_cfg(carbon, "all", 1, 2)).save(b)
    hessian.accumulate(shard_cfg(carbon, "n6-s1", 1, 2)).save(other)
    with pytest.raises(ValueError, match="feature_set"):  # another feature set: other rows
        hessian.merge(compose([f"inputs={{shards: [{a},{other}]}}"]))
    with pytest.raises(ValueError, match=r"are \['0/2'\], not the 1 shards"):  # one of two
        hessian.merge(compose([f"inputs={{shards: [{a}]}}"]))
    cut = tmp_path / "cut.npz"
    data = open(b, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        hessian.merge(compose([f"inputs={{shards: [{a},{cut}]}}"]))
    # a shard of another descriptor (the model config changed between the two jobs)
    bigger = str(tmp_path / "bigger.npz")
    hessian.accumulate(shard_cfg(carbon, "all", 1, 2, "model.descriptor.cutoff=3.6")).save(bigger)
    with pytest.raises(ValueError, match="feature_set"):
        hessian.merge(compose([f"inputs={{shards: [{a},{bigger}]}}"]))


def test_a_shard_out_of_range_is_refused(carbon):
    with pytest.raises(ValueError, match="shard=2 must satisfy 0 <= shard < n_shards=2"):
        hessian.accumulate(shard_cfg(carbon, "all", 2, 2))


# ----------------------------------------------------------------------------------------------
# code digests and the plan


@pytest.fixture
def fresh_digests():
    workflow.source_files.cache_clear()
    workflow._file_digest.cache_clear()
    yield
    workflow.source_files.cache_clear()
    workflow._file_digest.cache_clear()


def test_code_digest_follows_imports_and_ignores_comments_and_docstrings(tmp_path, monkeypatch, fresh_digests):
    root = tmp_path / "repo"
    shutil.copytree(workflow.REPOSITORY / "experiments", root / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(workflow.REPOSITORY / "rigidity", root / "rigidity", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(workflow, "REPOSITORY", root)

    def digest(*modules):
        workflow.source_files.cache_clear()
        workflow._file_digest.cache_clear()
        return workflow.code_digest(modules)

    files = {p.relative_to(root).as_posix() for p in workflow.source_files(("experiments.analyse",
                                                                            "experiments.fig6_body_order"))}
    assert {"experiments/fig6_body_order.py", "experiments/_results.py", "rigidity/hessian.py"} <= files
    assert not {"experiments/config.py", "experiments/workflow.py", "experiments/fig7_range_separation.py"} & files
    before = digest("experiments.analyse", "experiments.fig6_body_order")
    hessian_py = root / "rigidity" / "hessian.py"
    text = hessian_py.read_text()
    hessian_py.write_text(text.replace('"""The Gauss-Newton Hessian', '"""Edited docstring. The Gauss-Newton Hessian')
                          + "\n# a comment\n")
    assert digest("experiments.analyse", "experiments.fig6_body_order") == before
    hessian_py.write_text(text + "\n_EDITED = 1\n")
    assert digest("experiments.analyse", "experiments.fig6_body_order") != before  # the library is its code too
    assert digest("experiments.data", "experiments.datasets.si_nmers") == digest("experiments.data",
                                                                                 "experiments.datasets.si_nmers")


def test_the_plan_is_cached_and_recomputed_when_a_config_changes(tmp_path, monkeypatch):
    config = {"scale": "smoke", "results": "results"}
    calls = []
    real = workflow.Plan._build

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(workflow.Plan, "_build", counting)
    first = workflow.Plan(config, cache_dir=tmp_path)
    again = workflow.Plan(config, cache_dir=tmp_path)
    assert len(calls) == 1  # the second plan was read back
    assert again.experiments == first.experiments and again.hessian_shards == first.hessian_shards
    assert again.train_digest("ace", "si_nmers") == first.train_digest("ace", "si_nmers")
    other = workflow.Plan(dict(config, scale="quick"), cache_dir=tmp_path)
    assert len(calls) == 2 and other.hessian_shards != first.hessian_shards


def test_hydra_dict_quotes_paths_and_refuses_quotes():
    assert workflow.hydra_dict({"b": "x y/z", "a": ["p", "q"]}, shell=False) == '{a:["p","q"],b:"x y/z"}'
    assert workflow.hydra_dict({"a": "x"}) == "'{a:\"x\"}'"
    with pytest.raises(ValueError, match="quote"):
        workflow.hydra_dict({"a": 'x"y'})
    cfg = compose([f"inputs={workflow.hydra_dict({'data/a-b': '/tmp/with space/f.extxyz'}, shell=False)}"])
    assert cfg.inputs["data/a-b"] == "/tmp/with space/f.extxyz"


@pytest.mark.parametrize("key, rows", [
    ("n10-b0", range(0, 10)),
    ("n10-b2", range(20, 30)),
    ("n30-x1of3", [*range(0, 10), *range(20, 30)]),
    ("all-x0of4", range(10, 40)),
    ("n10-b3-seed5", range(30, 40)),
])
def test_blocks_and_committees_select_pool_positions(key, rows):
    fr = frames(["train"] * 40)
    np.testing.assert_array_equal(select(fr, POOL_ALL, key), list(rows))


def test_blocks_follow_the_pool_order_key():
    """With order_key, pool positions are ranks of info[order_key] (the CG water shuffle), not file order."""
    fr = frames(["train"] * 6)
    for a, rank in zip(fr, [3, 0, 5, 1, 4, 2]):
        a.info["shuffled_index"] = rank
    pool = SimpleNamespace(**{**vars(POOL_ALL), "order_key": "shuffled_index"})
    np.testing.assert_array_equal(select(fr, pool, "n2-b0"), [1, 3])  # ranks 0, 1
    np.testing.assert_array_equal(select(fr, pool, "n2-b1"), [0, 5])  # ranks 2, 3
    del fr[4].info["shuffled_index"]
    with pytest.raises(ValueError, match=r"structures \[4\] have no info 'shuffled_index'"):
        select(fr, pool, "n2-b0")


@pytest.mark.parametrize("key, message", [
    ("n10-s03", "is not one of"),  # one training set, one key: no leading zeros
    ("n10-seed07", "is not one of"),
    ("n10-s1-x0of2", "-x<k>of<K> follows all or n<N> only"),
    ("set1-x0of2", "-x<k>of<K> follows all or n<N> only"),
    ("n10-x3of3", "must satisfy k < K"),
    ("n10-b1", "block 1 of 10 structures needs pool positions \\[10, 20\\)"),
    ("n10-s4294967296", "must be below 2\\*\\*32"),
])
def test_bad_blocks_and_committees_are_refused(key, message):
    with pytest.raises(ValueError, match=message):
        select(frames(["train"] * 12), POOL_ALL, key)
