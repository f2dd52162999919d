"""Exact top-k per row of a score matrix (numpy), with exclusions (-inf) and a deterministic tie-break on the
column index: the reference (``_top_k_numpy``) and the group-maxima selection the scorer uses."""
from __future__ import annotations

from typing import Callable

import numpy as np

GROUP = 64  # columns per group of the group-maxima selection (top_k_chunked)
SUB = 8  # subgroups per group (when it divides the group): only the subgroups that reach the threshold are read
FAN = 8  # groups per supergroup when a row has many groups (_top_groups)


def top_k(scores: np.ndarray, k: int, backend: str | Callable = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row, best first; equal scores -> lower column first.

    backend "chunked" (``top_k_chunked``) reads each score once for group maxima and selects among k groups;
    "numpy" is the reference; "auto" takes "chunked" on wide rows, else "numpy"; a callable ``(scores, k) ->
    (indices, values)`` is used as given (bench/topk.py times others). All give identical results.
    """
    if callable(backend):
        return backend(scores, k)
    if backend == "chunked" or (backend == "auto" and scores.shape[1] >= 4 * GROUP * max(k, 1)):
        return top_k_chunked(scores, k)
    if backend not in ("auto", "numpy"):
        raise ValueError(f"top_k backend {backend!r}: chunked, numpy, auto or a function")
    return _top_k_numpy(scores, k)


def top_k_chunked(scores: np.ndarray, k: int, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` through group maxima, exact with the same tie-break.

    The columns are cut into m groups of ``group`` columns, strided (group g holds columns g, g + m, g + 2m, ...)
    so that the maxima are an elementwise maximum of ``group`` contiguous slices, one fast pass over the scores;
    the columns past ``group`` x m form one more group. t, the k-th largest group maximum of a row, is a lower
    bound of the row's k-th largest score (k groups each hold a score >= t), so every one of the top k lies in a
    group whose maximum is >= t. Where exactly k groups reach t (the rule for continuous scores) the scores >= t
    of those k groups are every score >= t of the row: a short list, ordered by (score desc, column asc) in one
    sort for the whole block. Other rows (group maxima tied at t, fewer than k finite scores) take the
    reference path. Each group is also cut into subgroups (``_subgroups``; subgroup a of group g: its columns
    g + m (b a + j), j < b = group / subgroups), whose maxima are taken on the way to the group maxima: only
    the subgroups whose maximum reaches t are read again.
    """
    n_rows, n_cols = scores.shape
    m = n_cols // group
    if k < 1 or m <= k or n_rows == 0:
        return _top_k_numpy(scores, k)
    n_sub = _subgroups(group)
    b = group // n_sub
    sub = scores[:, :m * group].reshape(n_rows, n_sub, b, m).max(axis=2)  # (rows, subgroups, groups)
    if n_cols > m * group:  # the columns past m x group: one more group, its subgroups b consecutive columns
        tail = np.full((n_rows, group), -np.inf, scores.dtype)
        tail[:, :n_cols - m * group] = scores[:, m * group:]
        sub = np.concatenate([sub, tail.reshape(n_rows, n_sub, b).max(axis=2)[:, :, None]], axis=2)
    by_group = sub.transpose(0, 2, 1)  # (rows, groups, subgroups)

    def candidates(g, a):  # group and subgroup numbers (n,) -> their columns (n, b), valid where < n_cols
        cols = np.where((g < m)[:, None], (g + m * b * a)[:, None] + m * np.arange(b),
                        (m * group + b * a)[:, None] + np.arange(b))
        return cols, cols < n_cols  # the last group may be shorter

    return _select_in_groups(sub.max(axis=1), k, lambda rows, g: by_group[rows, g], candidates,
                             lambda rows, cols: scores[rows, cols], lambda rows: scores[rows])


def _select_in_groups(gmax: np.ndarray, k: int, sub_max, candidates, values, full_rows,
                      column: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact selection of ``top_k_chunked`` and ``top_k_product`` from the group maxima ``gmax`` (rows,
    groups; more than k groups): ``sub_max(rows, g)`` gives the subgroup maxima (n, k, subgroups) of groups ``g`` (n, k)
    of rows ``rows`` (n, 1), ``candidates(g, a)`` the positions (n, columns of a subgroup) of subgroup ``a`` of
    group ``g`` (both (n,)) and where they exist (None: everywhere), ``values(rows, positions)`` the scores there
    (rows: (n, 1)), ``column`` the column each position stands for (the tie-break and the result; None: the
    position itself), ``full_rows(rows)`` whole rows of scores in column order for the reference path. Returns
    ``top_k``'s (indices, values)."""
    n_rows = len(gmax)
    t, simple, top = _top_groups(gmax, k)
    idx = np.empty((n_rows, k), np.int64)
    vals = np.empty((n_rows, k), gmax.dtype)
    rows = np.flatnonzero(simple)
    if len(rows):
        t_rows = t[rows]
        # the subgroups that reach t: each of the k groups has one (its maximum's), so >= k scores >= t per row
        r, i, a = np.nonzero(sub_max(rows[:, None], top) >= t_rows[:, None, None])  # r ascending
        pos, valid = candidates(top[r, i], a)  # (subgroups, columns of a subgroup)
        cand = values(rows[r][:, None], pos if valid is None else np.where(valid, pos, 0))
        keep = cand >= t_rows[r][:, None]
        if valid is not None:
            keep &= valid
        e, j = np.nonzero(keep)
        rr, cv, cc = r[e], cand[e, j], pos[e, j]  # rr ascending
        if column is not None:
            cc = column[cc]
        order = np.lexsort((cc, -cv, rr))  # per row: score desc, then column asc
        first = np.concatenate([[0], np.cumsum(np.bincount(rr, minlength=len(rows)))[:-1]])  # >= k per row
        pick = order[first[:, None] + np.arange(k)]
        idx[rows], vals[rows] = cc[pick], cv[pick]
    rest = np.flatnonzero(~simple)
    if len(rest):
        idx[rest], vals[rest] = _top_k_numpy(full_rows(rest), k)
    return np.where(np.isneginf(vals), -1, idx), vals


def _subgroups(group: int) -> int:
    """Subgroups per group of ``group`` columns: ``SUB`` where it divides the group, else 1 (the group)."""
    return SUB if group % SUB == 0 else 1


def _kth_largest(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, simple, above) of each row of ``values`` (more than k columns): t its k-th largest entry, above the
    entries >= t, simple where exactly k are (no tie at t) and t is finite."""
    n = values.shape[1]
    t = np.partition(values, n - k, axis=1)[:, n - k]
    above = values >= t[:, None]
    return t, (above.sum(axis=1) == k) & np.isfinite(t), above


def _top_groups(gmax: np.ndarray, k: int, fan: int = FAN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, simple, top) for the group maxima ``gmax`` (rows, groups; more than k groups): t each row's k-th
    largest group maximum, simple where exactly k groups reach it and it is finite, ``top`` (simple rows, k) the
    numbers of those k groups. Where rows have many groups, the groups are taken ``fan`` at a time
    into supergroups (strided like the groups: supergroup s holds groups s, s + q, s + 2q, ...; the groups past
    ``fan`` x q form one more), and ts, the k-th largest supergroup maximum, is <= t (k supergroups each hold a
    group >= ts). Where exactly k supergroups reach ts, the others' groups are all < ts <= t, so the k groups
    >= t are among those k supergroups' k x fan groups: t and the k groups are found among them (partitions of
    ~groups / fan and k x fan entries instead of one of every group, ~3x less time at 784 groups). The other
    rows (ties among the supergroup maxima) take the partition of every group."""
    n_rows, n_groups = gmax.shape
    q = n_groups // fan
    if q < 4 * k:  # few groups: one partition of them all
        t, simple, above = _kth_largest(gmax, k)
        return t, simple, np.nonzero(above[simple])[1].reshape(-1, k)
    sup = gmax[:, :q * fan].reshape(n_rows, fan, q).max(axis=1)
    if n_groups > q * fan:
        sup = np.concatenate([sup, gmax[:, q * fan:].max(axis=1, keepdims=True)], axis=1)
    t, one, sup_above = _kth_largest(sup, k)
    simple = np.zeros(n_rows, bool)
    top = np.empty((n_rows, k), np.int64)
    rows = np.flatnonzero(one)
    if len(rows):
        s = np.nonzero(sup_above[rows])[1].reshape(len(rows), k, 1)  # the k supergroups of each row, ascending
        members = np.where(s < q, s + q * np.arange(fan), q * fan + np.arange(fan)).reshape(len(rows), k * fan)
        valid = members < n_groups  # the last supergroup may be shorter
        member_max = np.where(valid, gmax[rows[:, None], np.where(valid, members, 0)], -np.inf).astype(gmax.dtype)
        t[rows], simple[rows], above = _kth_largest(member_max, k)
        ok = simple[rows]
        top[rows[ok]] = members[ok][above[ok]].reshape(-1, k)
    rest = np.flatnonzero(~one)
    if len(rest):
        t[rest], simple[rest], above = _kth_largest(gmax[rest], k)
        ok = simple[rest]
        top[rest[ok]] = np.nonzero(above[ok])[1].reshape(-1, k)
    return t, simple, top[simple]


def _top_k_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The numpy implementation of ``top_k``.

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
