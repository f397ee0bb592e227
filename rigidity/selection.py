r"""PR-guided dataset augmentation (paper Sec. IV.1): greedy selection of training candidates."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._validation import as_rows, check_positive_int
from .hessian import Hessian, _Candidates, _stage, _variance_after

__all__ = ["select_greedy", "GreedySelection", "OBJECTIVES"]

#: objective name -> (score to maximise from the (c, t) variances, value reported)
OBJECTIVES = {
    "mean_pr": "mean over targets of the PR (maximised)",
    "min_pr": "smallest PR over targets (maximised)",
    "mean_variance": "mean over targets of g^T H^-1 g (minimised)",
}


class GreedySelection(NamedTuple):
    indices: np.ndarray  #: (n_select,) chosen candidate indices, in the order picked
    objective: np.ndarray  #: (n_select,) objective after each pick


def _score(ops, var_after: Any, objective: str) -> np.ndarray:
    v = ops.to_numpy(var_after)
    if objective == "mean_pr":
        return (1.0 / v).mean(axis=1)
    if objective == "min_pr":
        return (1.0 / v).min(axis=1)
    return -v.mean(axis=1)


def select_greedy(
    h: Hessian,
    G_targets: Any,
    candidates: Any,
    n_select: int,
    objective: str = "mean_pr",
    weights: Any = None,
) -> GreedySelection:
    r"""Greedily pick the candidates that most raise the rigidity of a set of targets.

    At each step every remaining candidate c is scored by the objective of the
    targets' rigidities after adding c alone (Woodbury, as in
    :meth:`Hessian.pr_after_adding`); the best is added to the training set and H is
    updated before the next step. All quantities are kept in the whitened frame of
    H, so a pick updates targets and candidates with one rank-k correction instead
    of a new factorisation.

    Parameters
    ----------
    h : Hessian of the current training set.
    G_targets : (t, d) rows of the predictions whose rigidity should rise.
    candidates : (c, d), (c, k, d) or a sequence of (k_c, d) arrays: the rows each
        candidate would add (see :meth:`Hessian.pr_after_adding`).
    n_select : number of picks (at most the number of candidates).
    objective : "mean_pr" (the paper's), "min_pr" or "mean_variance".
    weights : loss weights of the candidate rows, shaped like ``candidates`` without d.

    Returns
    -------
    GreedySelection(indices, objective): picks in order, and the objective (mean PR,
    min PR or mean variance) after each pick.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {sorted(OBJECTIVES)}")
    n_select = check_positive_int(n_select, "n_select")
    factor = h._get_factor()
    ops = h._ops
    cands = _Candidates(h, candidates, weights)
    if n_select > cands.n:
        raise ValueError(f"n_select={n_select} exceeds the {cands.n} candidates")
    Z = factor.whiten(ops.asarray(as_rows(G_targets, h.n_features, "G_targets")))
    U = factor.whiten(cands.rows)  # whitened rows of every candidate
    available = np.ones(cands.n, dtype=bool)
    picks, values = [], []
    for _ in range(n_select):
        var = ops.rowsum_sq(Z)
        score = np.full(cands.n, -np.inf)
        for s, e in cands.chunk_bounds(Z.shape[0]):
            block = cands.padded(U[cands.offsets[s] : cands.offsets[e]], s, e)
            score[s:e] = _score(ops, _variance_after(ops, Z, var, block), objective)
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picks.append(best)
        values.append(-score[best] if objective == "mean_variance" else score[best])
        available[best] = False
        # Fold the pick into the whitened frame: T' = (I + u^T u)^{-1/2} T.
        Q, c = _stage(ops, U[cands.offsets[best] : cands.offsets[best + 1]])
        QT = ops.transpose(Q)
        Z += ((Z @ Q) * c) @ QT
        for s in range(0, U.shape[0], 8192):  # in place, without a full-size temporary
            U[s : s + 8192] += ((U[s : s + 8192] @ Q) * c) @ QT
    return GreedySelection(np.array(picks), np.array(values))
