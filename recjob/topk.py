"""Top-k per row of a score matrix, with exclusions and a deterministic tie-break on the column index."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row, best first; equal scores -> lower column first.

    Rows may contain -inf for excluded columns; those are never returned unless fewer than k finite entries
    exist, in which case the index is -1 there. Uses a partial selection (argpartition) and then resolves
    the rows whose k-th value is tied with values outside the selection exactly.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    if k_eff == 0 or n_rows == 0:
        return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, dtype=scores.dtype)
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    # Sort the selection by (score desc, column asc).
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    if k_eff < n_cols:
        # A row needs the exact path when some column outside the selection ties the k-th value with a
        # lower index (argpartition picks arbitrarily among ties).
        kth = vals[:, -1]
        n_ge = (scores >= kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(n_ge > k_eff):
            row = scores[r]
            cand = np.flatnonzero(row >= kth[r])
            o = np.lexsort((cand, -row[cand]))[:k_eff]
            idx[r], vals[r] = cand[o], row[cand[o]]
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    idx = np.where(np.isneginf(vals), -1, idx)
    return idx, vals


def score_block(user_f: np.ndarray, item_f: np.ndarray, item_bias: np.ndarray,
                seen: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a block of users: scores = U V^T + item bias, each user's seen columns excluded."""
    scores = user_f @ item_f.T
    scores += item_bias[None, :]
    for r, cols in enumerate(seen):
        if len(cols):
            scores[r, cols] = -np.inf
    return top_k(scores, k)
