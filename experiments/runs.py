"""Run keys: how a trained model (or the rows of a Hessian) names its training set and seed.

A run key is ``<selection>[-seed<S>]``; the selection picks rows of the dataset's
training pool (``dataset.training``: the structures whose ``info[training.pool_key]``
is ``training.pool``, or every structure when it is null, in file order):

=============  ==============================================================================
``all``        every structure of the pool
``n<N>``       the first N structures of the pool (datasets shuffled at preparation, e.g.
               QM9, give the paper's nested subsets; water dimers are sorted by O-O distance)
``n<N>-s<k>``  N structures drawn at random: the first N of
               ``numpy.random.RandomState(k).permutation(pool size)``; subsets with the same
               k are nested, different k are independent draws
``<name>``     a named training set of ``dataset.training.sets``: counts per value of
               ``info[training.sets_key]``, each the first count of one shuffle per value
               (drawn in ``training.sets_order`` from ``numpy.random.default_rng(sets_seed)``)
``-seed<S>``   optional: the training seed of a network (initial weights, batch order);
               without it the model config's own seed is used. Linear fits have none.
=============  ==============================================================================

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

_SELECTION = r"(?:all|n[1-9][0-9]*(?:-s[0-9]+)?|(?!all$|n[0-9])[A-Za-z][A-Za-z0-9_]*)"
#: a run key, as a regular expression (also the Snakemake wildcard constraint)
RUN_PATTERN = rf"{_SELECTION}(?:-seed[0-9]+)?"
_RE = re.compile(
    r"^(?:(?P<all>all)|n(?P<n>[1-9][0-9]*)(?:-s(?P<subset>[0-9]+))?|(?P<name>[A-Za-z][A-Za-z0-9_]*))"
    r"(?:-seed(?P<seed>[0-9]+))?$"
)


@dataclass(frozen=True)
class RunKey:
    key: str
    size: int | None = None  # n<N>
    subset: int | None = None  # -s<k>
    name: str | None = None  # a named training set
    seed: int | None = None  # -seed<S>

    @property
    def selection(self) -> str:
        """The key without its seed: the rows it selects."""
        return self.key.split("-seed")[0]


def parse_run(key: str) -> RunKey:
    """Parse a run key; a malformed one is an error that spells the grammar."""
    m = _RE.match(str(key))
    if m is None or (m["name"] is not None and re.fullmatch(r"n[0-9].*|all", m["name"])):
        raise ValueError(
            f"run key {key!r} is not one of all, n<N>, n<N>-s<k>, <named set>, each optionally followed by "
            "-seed<S> (e.g. n1000, n1000-s3, set2, n50-s0-seed7); see experiments/runs.py"
        )
    return RunKey(
        key=str(key),
        size=int(m["n"]) if m["n"] else None,
        subset=int(m["subset"]) if m["subset"] is not None else None,
        name=m["name"],
        seed=int(m["seed"]) if m["seed"] is not None else None,
    )


def _pool(frames: Sequence[Any], training: Any, dataset: str) -> np.ndarray:
    if training.pool is None:
        return np.arange(len(frames))
    values = np.array([str(a.info.get(training.pool_key, "")) for a in frames])
    pool = np.flatnonzero(values == training.pool)
    if pool.size == 0:
        raise ValueError(f"dataset {dataset}: no structure has info {training.pool_key} = {training.pool!r} "
                         f"(values: {sorted(set(values))}); see dataset.training.pool")
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
    if run.size is None:  # all
        return pool
    if run.size > len(pool):
        what = "training pool" if training.pool is None else f"training pool ({training.pool_key} {training.pool!r})"
        raise ValueError(f"run {key}: {run.size} structures asked for, the {what} of {dataset} has {len(pool)}")
    if run.subset is None:
        return pool[: run.size]
    order = np.random.RandomState(run.subset).permutation(len(pool))
    return np.sort(pool[order[: run.size]])


def _named_set(frames, training, name: str, pool: np.ndarray, dataset: str) -> np.ndarray:
    sets = dict(training.sets)
    if name not in sets:
        raise ValueError(f"run {name}: dataset {dataset} names no such training set (dataset.training.sets has "
                         f"{sorted(sets) or 'none'})")
    counts = {str(k): int(v) for k, v in dict(sets[name]).items()}
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
