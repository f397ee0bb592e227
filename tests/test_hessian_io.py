"""Hessian files: save / load round trips, map-reduce merging of shard files, and refused files."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import random_training

from rigidity import Hessian
from rigidity.hessian import FILE_VERSION

FEATURES = "le_ace_local r_c=3.7 E_max=[1000, 300, 200]"


def _assert_rel(a, b, rtol=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= rtol * np.abs(b).max(), np.abs(a - b).max() / np.abs(b).max()


def test_merged_shard_files_equal_the_hessian_built_in_one_go(rng, tmp_path):
    X, lam, _ = random_training(rng, n=301, d=20, reg=1e-2)
    full = Hessian(20, regularizer=1e-2).add(X, weights=lam)
    paths = []
    for k, rows in enumerate(np.array_split(np.arange(301), 3)):  # unequal shards: 101, 100, 100
        shard = Hessian(20, regularizer=1e-2).add(X[rows], weights=lam[rows])
        paths.append(shard.save(tmp_path / f"shard{k}.npz", feature_set=FEATURES, digest=f"sha-{k}", shard=k))
    merged = Hessian.merged(paths)
    _assert_rel(merged.matrix, full.matrix)
    _assert_rel(merged.matrix, X.T @ (lam[:, None] * X) + 1e-2 * np.eye(20))  # the regularizer once
    G = rng.normal(size=(40, 20))
    _assert_rel(merged.pr(G), full.pr(G))
    _assert_rel(merged.lpr(G), full.lpr(G))
    assert merged.n_rows == 301 and merged.regularizer == 1e-2
    assert merged.metadata == {"feature_set": FEATURES, "n_shards": 3}  # per-shard keys drop out
    # a merge of merged files counts the original shards; Hessians may be given directly
    merged.save(tmp_path / "half.npz")
    again = Hessian.merged([tmp_path / "half.npz", Hessian.load(paths[0])])
    assert again.n_rows == 301 + 101 and again.metadata["n_shards"] == 4
    with pytest.raises(ValueError, match="shard0.npz is given twice"):
        Hessian.merged([paths[0], paths[1], paths[0]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_round_trip_is_bit_exact(rng, tmp_path, dtype):
    h = Hessian(7, regularizer=0.3, dtype=dtype).add(rng.normal(size=(50, 7)), weights=rng.uniform(1, 2, 50))
    h.metadata = {"feature_set": FEATURES, "cutoff": 3.7, "n_max": 12, "purified": True}
    path = h.save(tmp_path / "h.npz", digest="é-0f3a", cutoff=0.1 + 0.2)  # keywords override .metadata
    with np.load(path, allow_pickle=False) as f:  # plain npz, no pickles
        assert f["accumulator"].dtype == np.dtype(dtype) and str(f["dtype"]) == dtype
        assert int(f["version"]) == FILE_VERSION
    g = Hessian.load(path)
    assert isinstance(g.matrix, np.ndarray) and g.matrix.dtype == np.dtype(dtype)
    assert np.array_equal(g.matrix, h.matrix) and np.array_equal(g._acc, h._acc)
    assert (g.regularizer, g.n_rows, g.n_features, g.dtype) == (0.3, 50, 7, h.dtype)
    assert g.metadata == {"feature_set": FEATURES, "cutoff": 0.1 + 0.2, "n_max": 12, "purified": True,
                          "digest": "é-0f3a"}
    assert [type(g.metadata[k]) for k in ("cutoff", "n_max", "purified")] == [float, int, bool]
    assert h.metadata["cutoff"] == 3.7  # save does not change the Hessian's own metadata
    # saving the loaded Hessian writes the same contents
    g.save(tmp_path / "g.npz")
    with np.load(path) as a, np.load(tmp_path / "g.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # a Hessian without rows saves a zero accumulator and loads as one without rows
    Hessian(4, regularizer=2.0).save(tmp_path / "empty.npz")
    with np.load(tmp_path / "empty.npz") as f:
        assert not f["accumulator"].any() and f["accumulator"].shape == (4, 4)
    e = Hessian.load(tmp_path / "empty.npz")
    assert e.n_rows == 0 and e.metadata == {} and np.array_equal(e.matrix, 2.0 * np.eye(4))


def test_bad_metadata_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"'cell': \[1, 2\]"):
        Hessian(3).save(tmp_path / "h.npz", cell=[1, 2])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "other, message",
    [
        ({"feature_set": "soap r_c=5"},
         "feature_set 'le_ace_local r_c=3.7 E_max=\\[1000, 300, 200\\]' != 'soap r_c=5'"),
        ({"feature_set": None}, "feature_set '.*' != None"),
        ({"dtype": "float32"}, "dtype 'float64' != 'float32'"),
        ({"regularizer": 0.2}, "regularizer 0.1 != 0.2"),
        ({"n_features": 6}, "n_features 5 != 6"),
    ],
)
def test_mismatched_shards_are_refused(rng, tmp_path, other, message):
    spec = {"n_features": 5, "regularizer": 0.1, "dtype": "float64", "feature_set": FEATURES, **other}
    a = Hessian(5, regularizer=0.1).add(rng.normal(size=(9, 5))).save(tmp_path / "a.npz", feature_set=FEATURES)
    b = Hessian(spec["n_features"], spec["regularizer"],
                dtype=spec["dtype"]).add(rng.normal(size=(9, spec["n_features"])))
    b = b.save(tmp_path / "b.npz", **({} if spec["feature_set"] is None else {"feature_set": spec["feature_set"]}))
    with pytest.raises(ValueError, match=f"shards {a} and {b}: {message}"):
        Hessian.merged([a, b])
    if "feature_set" in other and other["feature_set"] is not None:  # `+` refuses mixed feature sets too
        with pytest.raises(ValueError, match="different feature sets"):
            Hessian.load(a) + Hessian.load(b)


def _rewrite(path, **changes):
    """Rewrite a Hessian file with some keys replaced (None: dropped)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_truncated_incomplete_and_corrupt_files_are_refused(rng, tmp_path):
    h = Hessian(30, regularizer=1e-3).add(rng.normal(size=(40, 30)))
    path = h.save(tmp_path / "h.npz", feature_set=FEATURES)
    with open(path, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{cut} is not a complete Hessian file") as err:
        Hessian.load(cut)
    assert not isinstance(err.value, zipfile.BadZipFile)
    with pytest.raises(ValueError, match="cut.npz is not a complete Hessian file"):
        Hessian.merged([path, cut])
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz is not an .npz file"):
        Hessian.load(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError, match="no Hessian file at .*absent.npz"):
        Hessian.load(tmp_path / "absent.npz")

    acc = h._acc
    asym = acc.copy()
    asym[0, 1] += 1e-6 * np.abs(acc).max()
    cases = [
        ({"regularizer": None}, r"missing keys \['regularizer'\]"),
        ({"version": np.int64(FILE_VERSION + 1)}, f"file version {FILE_VERSION + 1} is unknown"),
        ({"accumulator": acc[:29, :29]}, r"shape \(29, 29\) does not match n_features=30"),
        ({"accumulator": acc.astype(np.float32)}, "dtype float32 does not match the recorded dtype 'float64'"),
        ({"accumulator": np.where(np.eye(30, dtype=bool), np.nan, acc)}, "NaN or inf"),
        ({"accumulator": asym}, "not a sum of outer products"),
        ({"n_rows": np.array([40])}, "'n_rows' should be a scalar"),
    ]
    for changes, message in cases:
        bad = tmp_path / "bad.npz"
        bad.write_bytes(data)
        _rewrite(bad, **changes)
        with pytest.raises(ValueError, match=f"{bad}: .*{message}|{bad} .*{message}"):
            Hessian.load(bad)


def test_an_interrupted_save_leaves_no_file(rng, tmp_path, monkeypatch):
    h = Hessian(20).add(rng.normal(size=(30, 20)))
    old = Hessian(20).add(rng.normal(size=(30, 20)))
    old.save(tmp_path / "kept.npz")

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04" + b"\0" * 1000)  # half a file
        raise KeyboardInterrupt("job killed")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(KeyboardInterrupt):
        h.save(tmp_path / "new.npz")
    with pytest.raises(KeyboardInterrupt):
        h.save(tmp_path / "kept.npz")
    assert os.listdir(tmp_path) == ["kept.npz"]  # no new.npz, no temporary file
    monkeypatch.undo()
    assert np.array_equal(Hessian.load(tmp_path / "kept.npz").matrix, old.matrix)  # the old file is intact
    h.save(tmp_path / "kept.npz")  # a completed save replaces it
    assert np.array_equal(Hessian.load(tmp_path / "kept.npz").matrix, h.matrix)
    assert sorted(os.listdir(tmp_path)) == ["kept.npz"]


def test_torch_round_trip(rng, tmp_path):
    torch = pytest.importorskip("torch")
    X = rng.normal(size=(60, 8))
    ht = Hessian(8, regularizer=1e-2, dtype="float32").add(torch.tensor(X, dtype=torch.float32))
    path = ht.save(tmp_path / "t.npz", feature_set=FEATURES)
    hn = Hessian.load(path)  # numpy by default
    assert isinstance(hn.matrix, np.ndarray) and hn.matrix.dtype == np.float32
    assert np.array_equal(hn.matrix, ht.matrix.numpy())
    tt = Hessian.load(path, device="cpu")
    assert isinstance(tt.matrix, torch.Tensor) and tt.matrix.dtype == torch.float32 and tt.device == torch.device("cpu")
    assert torch.equal(tt.matrix, ht.matrix) and tt.metadata == {"feature_set": FEATURES}
    other = ht.save(tmp_path / "t2.npz", feature_set=FEATURES)
    merged = Hessian.merged([path, other], device="cpu")
    assert isinstance(merged.matrix, torch.Tensor) and merged.n_rows == 120
    assert torch.allclose(merged.matrix, 2 * ht.matrix - 1e-2 * torch.eye(8), rtol=1e-6)


def test_files_need_no_torch(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np; from rigidity import Hessian\n"
        f"p = Hessian(3, 0.5).add(np.eye(3)).save({str(tmp_path / 'h.npz')!r}, feature_set='x')\n"
        "h = Hessian.merged([p]); assert h.n_rows == 3 and h.metadata == {'feature_set': 'x', 'n_shards': 1}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
