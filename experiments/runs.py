"""Run keys: how a trained model (or the rows of a Hessian) names its training set and seed.

A run key is ``<selection>[-x<k>of<K>][-seed<S>]``. The selection picks rows of the
dataset's training pool (``dataset.training``: the structures whose
``info[training.pool_key]`` is ``training.pool``, or every structure when it is null,
in file order, or sorted by ``info[training.order_key]`` where one is named):

================  ===========================================================================
``all``           every structure of the pool
``n<N>``          the first N structures of the pool (QM9 is shuffled at preparation, so these
                  are the paper's nested subsets; water dimers are sorted by O-O distance)
``n<N>-s<k>``     N structures drawn at random: the first N of
                  ``numpy.random.RandomState(k).permutation(pool size)``; the same k gives
                  nested sets, another k an independent draw (Fig 5's ``n500-s123``)
``n<N>-b<k>``     block k of N: pool positions [k N, (k + 1) N); blocks of one size are
                  disjoint (the paper's coarse-grained water subsets, Fig 8)
``<name>``        a named training set of ``dataset.training.sets``: counts per value of
                  ``info[training.sets_key]``, each the first count of one shuffle per value
                  (drawn in ``training.sets_order`` from ``numpy.random.default_rng(sets_seed)``)
``-x<k>of<K>``    after ``all`` or ``n<N>``: the selection without its block k of K equal
                  blocks (a committee member: the paper's Fig 2 leaves block k of 10 out)
``-seed<S>``      the training seed of a network (initial weights, batch order); without it
                  the model config's own seed is used. Linear fits have none.
================  ===========================================================================

Numbers are written without leading zeros, so that one training set has one key.
Selections are returned as increasing row indices of the dataset file, so a run's
training set does not depend on the order in which it was drawn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RunKey", "parse_run", "select", "RUN_PATTERN", "set_label"]

_INT = r"(?:0|[1-9][0-9]*)"
_NAME = r"(?!all(?:-|$)|n[0-9])[A-Za-z][A-Za-z0-9_]*"
_SELECTION = rf"(?:all|n[1-9][0-9]*(?:-s{_INT}|-b{_INT})?|{_NAME})"
#: a run key, as a regular expression (also the Snakemake wildcard constraint)
RUN_PATTERN = rf"{_SELECTION}(?:-x{_INT}of[1-9][0-9]*)?(?:-seed{_INT})?"
_RE = re.compile(
    rf"^(?:(?P<all>all)|n(?P<n>[1-9][0-9]*)(?:-s(?P<subset>{_INT})|-b(?P<block>{_INT}))?|(?P<name>{_NAME}))"
    rf"(?:-x(?P<out>{_INT})of(?P<of>[1-9][0-9]*))?(?:-seed(?P<seed>{_INT}))?$"
)
GRAMMAR = ("all, n<N>, n<N>-s<k>, n<N>-b<k> or <named set>, then optionally -x<k>of<K> (after all or n<N>) and "
           "-seed<S>, numbers without leading zeros (e.g. n1000, n1000-s3, n50-b2, set2, n10000-x3of10, n50-b0-seed7)")


@dataclass(frozen=True)
class RunKey:
    key: str
    size: int | None = None  # n<N>
    subset: int | None = None  # -s<k>
    block: int | None = None  # -b<k>
    name: str | None = None  # a named training set
    left_out: tuple[int, int] | None = None  # -x<k>of<K>: (k, K)
    seed: int | None = None  # -seed<S>

    @property
    def selection(self) -> str:
        """The key without its seed: the rows it selects."""
        return self.key.split("-seed")[0]


def parse_run(key: str) -> RunKey:
    """Parse a run key; a malformed one is an error that spells the grammar."""
    m = _RE.match(str(key))
    if m is None:
        raise ValueError(f"run key {key!r} is not one of {GRAMMAR}; see experiments/runs.py")
    left_out = (int(m["out"]), int(m["of"])) if m["out"] is not None else None
    if left_out is not None:
        if m["subset"] is not None or m["block"] is not None or m["name"] is not None:
            raise ValueError(f"run key {key!r}: -x<k>of<K> follows all or n<N> only")
        if not left_out[0] < left_out[1]:
            raise ValueError(f"run key {key!r}: block {left_out[0]} of {left_out[1]} must satisfy k < K")
    subset = int(m["subset"]) if m["subset"] is not None else None
    if subset is not None and subset >= 2**32:
        raise ValueError(f"run key {key!r}: the subset number {subset} must be below 2**32 (a numpy seed)")
    return RunKey(
        key=str(key),
        size=int(m["n"]) if m["n"] else None,
        subset=subset,
        block=int(m["block"]) if m["block"] is not None else None,
        name=m["name"],
        left_out=left_out,
        seed=int(m["seed"]) if m["seed"] is not None else None,
    )


def _pool(frames: Sequence[Any], training: Any, dataset: str) -> np.ndarray:
    if training.pool is None:
        pool = np.arange(len(frames))
    else:
        values = np.array([str(a.info.get(training.pool_key, "")) for a in frames])
        pool = np.flatnonzero(values == training.pool)
        if pool.size == 0:
            raise ValueError(f"dataset {dataset}: no structure has info {training.pool_key} = {training.pool!r} "
                             f"(values: {sorted(set(values))}); see dataset.training.pool")
    order_key = getattr(training, "order_key", None)
    if order_key:
        missing = [int(i) for i in pool if order_key not in frames[i].info]
        if missing:
            raise ValueError(f"dataset {dataset}: structures {missing[:5]} have no info {order_key!r}, the order of "
                             "the training pool (dataset.training.order_key)")
        pool = pool[np.argsort([frames[i].info[order_key] for i in pool], kind="stable")]
    return pool


def set_label(counts: dict, order: Sequence[str]) -> str:
    """'450 pentamers + 50 dimers' style label of a named set's counts, in the reverse of ``order``."""
    return " + ".join(f"{int(counts[k])} {k}s" for k in reversed(list(order)) if int(counts.get(k, 0)))


def select(frames: Sequence[Any], training: Any, key: str, dataset: str = "dataset") -> np.ndarray:
    """Row indices (increasing) of the structures run ``key`` trains on.

    Parameters
    ----------
    frames : the dataset's structures (ASE Atoms with ``info``), in file order.
    training : the dataset config's ``training`` node (:class:`experiments.config.TrainingPool`).
    key : a run key (module docstring).
    dataset : the dataset's name, for error messages.
    """
    run = parse_run(key)
    pool = _pool(frames, training, dataset)
    if run.name is not None:
        return _named_set(frames, training, run.name, pool, dataset)
    what = "training pool" if training.pool is None else f"training pool ({training.pool_key} {training.pool!r})"
    if run.size is None:  # all
        rows = pool
    elif run.block is not None:
        lo, hi = run.block * run.size, (run.block + 1) * run.size
        if hi > len(pool):
            raise ValueError(f"run {key}: block {run.block} of {run.size} structures needs pool positions "
                             f"[{lo}, {hi}), the {what} of {dataset} has {len(pool)}")
        rows = pool[lo:hi]
    elif run.size > len(pool):
        raise ValueError(f"run {key}: {run.size} structures asked for, the {what} of {dataset} has {len(pool)}")
    elif run.subset is not None:
        rows = pool[np.random.RandomState(run.subset).permutation(len(pool))[: run.size]]
    else:
        rows = pool[: run.size]
    if run.left_out is not None:
        k, n_blocks = run.left_out
        block = len(rows) // n_blocks
        if block < 1:
            raise ValueError(f"run {key}: {len(rows)} structures cannot be cut into {n_blocks} blocks")
        rows = np.concatenate([rows[: k * block], rows[(k + 1) * block:]])
    return np.sort(rows)


def _named_set(frames, training, name: str, pool: np.ndarray, dataset: str) -> np.ndarray:
    sets = dict(training.sets)
    if name not in sets:
        raise ValueError(f"run {name}: dataset {dataset} names no such training set (dataset.training.sets has "
                         f"{sorted(sets) or 'none'})")
    counts = {}
    for value, count in dict(sets[name]).items():
        try:
            counts[str(value)] = int(count)
        except (TypeError, ValueError):
            raise ValueError(f"training set {name} of {dataset}: the count of {value} is {count!r}, "
                             "not an integer") from None
    order_of = list(training.sets_order)
    unknown = sorted(set(counts) - set(order_of))
    if unknown:
        raise ValueError(f"training set {name} of {dataset} counts {unknown}, which are not in "
                         f"dataset.training.sets_order {order_of}")
    labels = np.array([str(frames[i].info.get(training.sets_key, "")) for i in pool])
    rng = np.random.default_rng(int(training.sets_seed))
    shuffled = {v: rng.permutation(pool[labels == v]) for v in order_of}
    rows = []
    for value in order_of:
        c = counts.get(value, 0)
        if c < 0:
            raise ValueError(f"training set {name} of {dataset}: count {c} of {value} must be >= 0")
        if c > len(shuffled[value]):
            raise ValueError(f"training set {name} ({set_label(counts, order_of)}) needs {c} {value}s, {dataset} has "
                             f"{len(shuffled[value])}")
        rows.append(shuffled[value][:c])
    return np.sort(np.concatenate(rows)).astype(int)
