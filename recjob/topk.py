"""Top-k per row of a score matrix (numpy), with exclusions and a deterministic tie-break on the column index,
and the Spark side: top-N per user inside executors with the item factors broadcast."""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob import schema as S


GROUP = 64  # columns per group of the group-maxima selection (top_k_chunked)
SUB = 8  # subgroups per group (when it divides the group): only the subgroups that reach the threshold are read
FAN = 8  # groups per supergroup when a row has many groups (_top_groups)
CHUNK_COLUMNS = 16384  # item columns per chunk of top_k_product (fastest of 2,048..16,384 at 50k and 156k items)
BOUND_NORM = 1.0  # items are stored by bias + BOUND_NORM x norm (ItemChunks): the bound of a user of norm 1
BOUND_MARGIN = 1e-5  # relative margin of chunk_bounds over float32 rounding


def top_k(scores: np.ndarray, k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row, best first; equal scores -> lower column first.

    backend "chunked" (``top_k_chunked``) reads each score once for group maxima and selects among k groups;
    "tensorflow" uses ``tf.math.top_k`` (documented: equal elements -> lower index first); "numpy" is the
    reference; "auto" takes "chunked" on wide rows, else TensorFlow when it is importable. All give identical
    results (bench/topk.py times them).
    """
    if backend == "chunked" or (backend == "auto" and scores.shape[1] >= 4 * GROUP * max(k, 1)):
        return top_k_chunked(scores, k)
    if backend in ("auto", "tensorflow") and scores.size:
        tf = _tensorflow(required=backend == "tensorflow")
        if tf is not None:
            k_eff = min(k, scores.shape[1])
            res = tf.math.top_k(scores, k=k_eff, sorted=True)
            idx, vals = res.indices.numpy().astype(np.int64), res.values.numpy()
            if k_eff < k:
                idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
                vals = np.pad(vals, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
            return np.where(np.isneginf(vals), -1, idx), vals
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


class ItemChunks(NamedTuple):
    """The item factors and bias laid out for ``top_k_product`` (``item_chunks`` builds it).

    ``factors``: (chunks, columns of a chunk, rank + 1), the items' factors and bias (``with_bias``), the items
    stored by their largest possible score, highest first (bias + norm x ``BOUND_NORM``), so that the
    first chunks hold the items that can reach a user's top k and later chunks can often be skipped; past the
    last item, padding (factors 0, bias -inf: scores -inf, never recommended). ``column``: the item column (row
    of the given matrix) stored at each position, ``n_items`` + j for padding; ``position``: the stored
    position of each item column. ``fronts``: per chunk, (norms, biases) of the items on the upper convex hull
    of its (norm, bias + margin) points: the largest x * norm + bias over them is the largest over the chunk for
    any x >= 0, so for a user u they give ``chunk_bounds``, |u| * norm + bias, an upper bound of every u . v + b
    of the chunk (Cauchy-Schwarz)."""
    factors: np.ndarray
    column: np.ndarray
    position: np.ndarray
    fronts: list

    @property
    def columns(self) -> int:
        """Columns (stored items) per chunk."""
        return self.factors.shape[1]

    def buffer(self, rows: int, group: int = GROUP) -> np.ndarray:
        """A buffer for ``top_k_product`` on blocks of up to ``rows`` users: their scores and subgroup maxima."""
        return np.empty(self.factors.shape[0] * self.columns * rows * (group + _subgroups(group)) // group, np.float32)


def item_chunks(factors_bias: np.ndarray, group: int = GROUP, chunk_columns: int = CHUNK_COLUMNS) -> ItemChunks:
    """``factors_bias`` (items, rank + 1; ``with_bias``) as ``ItemChunks``: chunks of about ``chunk_columns``
    columns, a multiple of ``group`` each (the padding, fewer than ``group`` columns per chunk, at the end)."""
    n_items, width = factors_bias.shape
    n_chunks = max(1, -(-n_items // chunk_columns))
    cols = group * max(1, -(-n_items // (group * n_chunks)))
    norm = np.linalg.norm(factors_bias[:, :-1].astype(np.float64), axis=1)
    bias = factors_bias[:, -1].astype(np.float64)
    order = np.lexsort((np.arange(n_items), -(bias + BOUND_NORM * norm)))  # ties: the lower column first
    padded = np.zeros((n_chunks * cols, width), np.float32)
    padded[:n_items] = factors_bias[order]
    padded[n_items:, -1] = -np.inf
    column = np.concatenate([order, np.arange(n_items, n_chunks * cols)]).astype(np.int64)
    position = np.empty(n_items, np.int64)
    position[order] = np.arange(n_items)
    margin = bias + BOUND_MARGIN * np.abs(bias)  # the bound's bias term (chunk_bounds)
    fronts = [_upper_hull(norm[order[c * cols:(c + 1) * cols]], margin[order[c * cols:(c + 1) * cols]])
              for c in range(n_chunks)]
    return ItemChunks(padded.reshape(n_chunks, cols, width), column, position, fronts)


def _upper_hull(norm: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (norm, bias) points where max over the points of x * norm + bias can be reached for some x >= 0:
    the upper convex hull from the largest bias to the largest norm (monotone chain)."""
    keep = np.isfinite(bias)
    order = np.lexsort((-bias[keep], -norm[keep]))  # norm desc, then bias desc
    pts: list[tuple[float, float]] = []
    for n, b in zip(norm[keep][order], bias[keep][order]):
        if pts and b <= pts[-1][1]:
            continue  # beaten on both: a smaller (or equal) norm and no larger bias
        while len(pts) >= 2 and ((pts[-1][0] - pts[-2][0]) * (b - pts[-2][1])
                                 - (pts[-1][1] - pts[-2][1]) * (n - pts[-2][0])) <= 0:
            pts.pop()  # under the segment from pts[-2] to (n, b): never the largest
        pts.append((n, b))
    arr = np.array(pts, np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def chunk_bounds(user_norm: np.ndarray, chunks: ItemChunks) -> np.ndarray:
    """(users, chunks): an upper bound of every score u . v + b of each chunk for users of norm |u|: by
    Cauchy-Schwarz |u| |v| + b, plus a margin (BOUND_MARGIN of |u| |v| + |b|) over the float32 product's
    rounding (at most ~rank x 6e-8 of that sum), over the chunk's hull (``ItemChunks.fronts``)."""
    out = np.full((len(user_norm), len(chunks.fronts)), -np.inf)
    x = user_norm.astype(np.float64)[:, None] * (1 + BOUND_MARGIN)
    for c, (n, b) in enumerate(chunks.fronts):
        if len(n):
            out[:, c] = (x * n + b).max(axis=1)
    return out


def top_k_product(user_fb: np.ndarray, chunks: ItemChunks, k: int, seen_rows: np.ndarray, seen_cols: np.ndarray,
                  out: np.ndarray | None = None, group: int = GROUP,
                  counts: dict | None = None, skip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of the scores ``user_fb`` @ V^T (V: the items of ``chunks``; ``user_fb``: the user factors with a
    last column of ones for the item bias), the (row, item column) pairs of ``seen_rows``/``seen_cols``
    excluded. Exact, with ``top_k``'s tie-break (lower item column first).

    The same group-maxima selection as ``top_k_chunked``, but the product runs one chunk of columns at a time
    and each chunk's group maxima are taken while its scores are still in the CPU cache (groups are strided
    within a chunk). A chunk's scores are laid out item-major (columns of the chunk x users): its group maxima
    are then an elementwise maximum of ``group`` contiguous slabs, about twice as fast as over the user-major
    layout, and the product a little faster too. Before each chunk, a user whose k-th largest group maximum so
    far (a lower bound of their k-th best score) is above the chunk's bound (``chunk_bounds``) skips it: none
    of its items can enter the top k, nor tie with it. ``out``: a reusable contiguous buffer of at least
    chunks x columns of a chunk x users floats (``ItemChunks.buffer``); ``counts``: adds the (user, chunk) pairs
    computed and skipped to its "computed" and "skipped"; ``skip`` False computes every chunk (bench/topk.py
    compares). Subgroup maxima as in ``top_k_chunked`` (subgroup a of a chunk's group g: its positions
    g + m (b a + j), j < b = group / subgroups), kept (chunks, subgroups, groups of a chunk, users) after the
    scores in ``out``.
    """
    n_chunks, cols, _ = chunks.factors.shape
    rows_n = len(user_fb)
    m = cols // group  # groups per chunk
    n_sub = _subgroups(group)
    b = group // n_sub  # positions per subgroup
    stride = cols * rows_n  # floats of one chunk's scores in ``flat``
    size = n_chunks * stride * (group + n_sub) // group  # the scores, then the subgroup maxima
    if out is None or out.size < size or not out.flags.c_contiguous:
        out = np.empty(size, np.float32)
    flat = out.reshape(-1)[:n_chunks * stride]
    sub_flat = out.reshape(-1)[n_chunks * stride:size]
    sub = sub_flat.reshape(n_chunks, n_sub, m, rows_n)  # a user's entries in a chunk they skipped: never read
    width = np.zeros(n_chunks, np.int64)  # users computed in each chunk: chunk c's scores are (cols, width[c])

    def chunk_scores(c: int) -> np.ndarray:
        return flat[c * stride:c * stride + cols * width[c]].reshape(cols, width[c])

    chunk_of, local = np.divmod(chunks.position[seen_cols.astype(np.int64)], cols)
    order = np.argsort(chunk_of, kind="stable")
    at = np.searchsorted(chunk_of[order], np.arange(n_chunks + 1))
    bounds = chunk_bounds(np.linalg.norm(user_fb[:, :-1], axis=1), chunks)
    gmax_t = np.full((n_chunks * m, rows_n), -np.inf, np.float32)  # group maxima, a row per group
    slot = np.full((n_chunks, rows_n), -1, np.int64)  # a user's column in a chunk's scores; -1: skipped
    # The k largest group maxima of the chunks before ``merged``, merged into it only when enough users' largest
    # score so far (``top``) is above a chunk's bound: no other user can skip that chunk
    best = np.full((rows_n, max(k, 1)), -np.inf, np.float32)
    top = np.full(rows_n, -np.inf, np.float32)
    merged = 0
    for c in range(n_chunks):
        if skip and c and k >= 1 and (top > bounds[:, c]).sum() * 8 >= rows_n:  # merge: 1/8 of the users might skip
            pending = gmax_t[merged * m:c * m].T
            best = np.partition(np.concatenate([best, pending], axis=1), pending.shape[1], axis=1)[:, -k:]
            merged = c
            active = np.flatnonzero(bounds[:, c] >= best[:, 0])
            if not len(active):
                continue
        else:
            active = np.arange(rows_n)
        n_act = width[c] = len(active)
        slot[c, active] = np.arange(n_act)
        s = chunk_scores(c)
        # The padding items' -inf bias sets the "invalid" flag in OpenBLAS's kernels for a few users (0 x -inf
        # in lanes it discards; no NaN reaches the scores): not a warning for the logs.
        with np.errstate(invalid="ignore"):
            np.matmul(chunks.factors[c], (user_fb if n_act == rows_n else user_fb[active]).T, out=s)
        sel = order[at[c]:at[c + 1]]
        if len(sel):
            r = slot[c, seen_rows[sel]]
            s[local[sel][r >= 0], r[r >= 0]] = -np.inf
        g = gmax_t[c * m:(c + 1) * m]
        if n_act == rows_n:
            np.max(s.reshape(n_sub, b, m, rows_n), axis=1, out=sub[c])
            np.max(sub[c], axis=0, out=g)
        else:
            part = s.reshape(n_sub, b, m, n_act).max(axis=1)
            sub[c][:, :, active] = part
            g[:, active] = part.max(axis=0)
        if c + 1 < n_chunks:
            np.maximum(top, g.max(axis=0), out=top)
    if counts is not None:
        done = int((slot >= 0).sum())
        counts["computed"] = counts.get("computed", 0) + done
        counts["skipped"] = counts.get("skipped", 0) + slot.size - done

    def full_rows(rows):  # whole rows in item order, -inf in the chunks a row skipped
        stored = np.full((len(rows), n_chunks, cols), -np.inf, np.float32)
        for c in range(n_chunks):
            there = slot[c, rows] >= 0
            stored[there, c] = chunk_scores(c)[:, slot[c, rows[there]]].T
        return stored.reshape(len(rows), -1)[:, chunks.position]

    gmax = np.ascontiguousarray(gmax_t.T)
    if k < 1 or gmax.shape[1] <= k or rows_n == 0:
        return _top_k_numpy(full_rows(np.arange(rows_n)), k)

    def sub_max(rows, g):  # rows (n, 1), their groups (n, k) -> the groups' subgroup maxima (n, k, subgroups)
        chunk, within = np.divmod(g, m)
        return sub_flat.take(((chunk[..., None] * n_sub + np.arange(n_sub)) * m + within[..., None]) * rows_n
                             + rows[..., None])

    def candidates(g, a):  # group and subgroup numbers (n,) -> their positions (n, b); padding scores -inf
        chunk, within = np.divmod(g, m)
        return (chunk * cols + within + m * b * a)[:, None] + m * np.arange(b), None

    every = bool((slot >= 0).all())  # no chunk skipped: a user's scores are in their own column of every chunk

    def values(rows, pos):  # one flat gather: ~30 % less time than indexing the chunks by three arrays
        if every:  # chunk x stride + (pos - chunk x cols) x rows_n + row, with stride = cols x rows_n
            return flat.take(pos * rows_n + rows)
        chunk, col = np.divmod(pos, cols)
        return flat.take(chunk * stride + col * width[chunk] + slot[chunk, rows])

    return _select_in_groups(gmax, k, sub_max, candidates, values, full_rows, column=chunks.column)


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


def _tensorflow(required: bool):
    try:
        import tensorflow as tf
    except ImportError:
        if required:
            raise
        return None
    return tf


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


def score_block(user_f: np.ndarray, item_f: np.ndarray, item_bias: np.ndarray,
                seen: list[np.ndarray], k: int, mlp: dict | None = None,
                backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a block of users: scores = U V^T + item bias (or the MLP's output + item bias when
    ``mlp`` is given, see ``mlp_part``), each user's seen columns excluded."""
    lengths = [len(c) for c in seen]
    seen_rows = np.repeat(np.arange(len(seen)), lengths)
    seen_cols = np.concatenate(seen).astype(np.int64) if sum(lengths) else np.empty(0, np.int64)
    if mlp is None and backend == "auto":
        return top_k_product(with_ones(user_f), item_chunks(with_bias(item_f, item_bias)), k, seen_rows, seen_cols)
    scores = block_scores(user_f, with_bias(item_f, item_bias), mlp, seen_rows, seen_cols)
    return top_k(scores, k, backend)


def with_bias(item_f: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """Item factors with the item bias as one more column: [U, 1] [V, b]^T is U V^T + b in one matrix product
    (cheaper than adding b to every score afterwards)."""
    return np.hstack([item_f, item_bias[:, None]]).astype(np.float32)


def with_ones(user_f: np.ndarray) -> np.ndarray:
    """User factors with a last column of ones, the item bias's factor in ``with_bias``'s product."""
    return np.hstack([user_f, np.ones((len(user_f), 1), np.float32)]).astype(np.float32)


def block_scores(user_f: np.ndarray, item_fb: np.ndarray, mlp: dict | None,
                 seen_rows: np.ndarray, seen_cols: np.ndarray) -> np.ndarray:
    """The users x items scores of a block, -inf at the (row, column) pairs of seen items. ``item_fb``: the item
    factors and bias (``with_bias``)."""
    if mlp is None:
        scores = with_ones(user_f) @ item_fb.T
    else:
        scores = mlp_scores(user_f, mlp)
        scores += item_fb[:, -1][None, :]
    scores[seen_rows, seen_cols] = -np.inf
    return scores


def mlp_part(weights: list[tuple[np.ndarray, np.ndarray]], item_f: np.ndarray) -> dict:
    """What scoring needs of an MLP over [p_u, q_i] (``weights``: (kernel, bias) of each dense layer, ReLU
    between them, the last one linear with one output). The first layer splits into a user and an item
    half, so the item half (item_f @ W_item + b) is computed once per catalogue, not once per pair."""
    (w1, b1), rest = weights[0], weights[1:]
    k = item_f.shape[1]
    return {"user_w": np.asarray(w1[:k], np.float32), "item_h": (item_f @ w1[k:] + b1).astype(np.float32),
            "layers": [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in rest]}


def mlp_scores(user_f: np.ndarray, mlp: dict, max_cells: int = 1 << 23) -> np.ndarray:
    """The MLP's output for every (user of the block, item): users x items, a few users at a time so that
    the hidden activations stay under ``max_cells`` floats."""
    uh = user_f @ mlp["user_w"]
    item_h = mlp["item_h"]
    n_items, width = item_h.shape
    out = np.empty((len(user_f), n_items), np.float32)
    step = max(1, max_cells // max(1, n_items * width))
    for start in range(0, len(user_f), step):
        h = np.maximum(uh[start:start + step, None, :] + item_h[None, :, :], 0.0)
        for j, (w, b) in enumerate(mlp["layers"]):
            h = h @ w + b
            if j < len(mlp["layers"]) - 1:
                h = np.maximum(h, 0.0)
        out[start:start + step] = h[..., 0]
    return out


OUT_SCHEMA = f"{S.USER_IDX} int, {S.USER} string, {S.RANK} int, {S.ITEM_IDX} int, {S.SCORE} float"


def item_matrix(items: pd.DataFrame, mlp_weights: list | None = None) -> dict:
    """Item factors as arrays with columns ordered by asin (the tie-break order); with ``mlp_weights`` (an
    MLP model's dense layers) scoring runs the MLP instead of the dot product."""
    items = items.sort_values(S.ITEM, kind="stable").reset_index(drop=True)
    factors = np.stack(items["factors"].to_numpy()).astype(np.float32) if len(items) else np.zeros((0, 0), np.float32)
    return {
        "factors": factors,
        "factors_bias": with_bias(factors, items["bias"].to_numpy(np.float32)),
        "item_idx": items[S.ITEM_IDX].to_numpy(np.int32),
        "asin": items[S.ITEM].to_numpy(),
        "mlp": mlp_part(mlp_weights, factors) if mlp_weights else None,
    }


def recommend(users: DataFrame, seen_cols: DataFrame, matrix: dict, top_n: int, block: int,
              global_mean: float, backend: str = "auto") -> DataFrame:
    """Rows (user_idx, reviewerID, rank, item_idx, score) for every user of ``users``.

    ``users``: (user_idx, reviewerID, bias, factors); ``seen_cols``: (user_idx, cols) with cols the item
    *column positions* in ``matrix`` to exclude. score = the model's score + user bias + ``global_mean``
    (the predicted rating for the rating models). The executors read and write Arrow record batches
    (``mapInArrow``): the factors of a batch arrive as one flat array, no Python object per user.
    """
    bc = users.sparkSession.sparkContext.broadcast({k: matrix[k] for k in ("factors_bias", "item_idx", "mlp")})
    fn = arrow_scorer(lambda: bc.value, top_n, block, global_mean, backend)
    # A user without seen items gets an empty list, not the left join's null: Spark's Arrow path is much slower
    # on null lists than on empty ones (bench/results/score.md).
    joined = users.join(seen_cols, S.USER_IDX, "left").select(
        S.USER_IDX, S.USER, "bias", "factors", F.coalesce("cols", F.array().cast("array<int>")).alias("cols"))
    return joined.mapInArrow(fn, OUT_SCHEMA)


_LAID_OUT: dict = {}  # the last item matrix laid out in this process: (its factors_bias, ItemChunks, buffers)


def laid_out(factors_bias: np.ndarray, block: int) -> tuple[ItemChunks, np.ndarray]:
    """``item_chunks(factors_bias)`` and a score buffer for blocks of ``block`` users, made once per process for
    the same array: an executor's Python worker runs many tasks with the same broadcast value, and laying the
    items out again for each would cost every task."""
    if _LAID_OUT.get("factors_bias") is not factors_bias:
        _LAID_OUT.clear()
        _LAID_OUT.update(factors_bias=factors_bias, chunks=item_chunks(factors_bias), buffers={})
    chunks, buffers = _LAID_OUT["chunks"], _LAID_OUT["buffers"]
    if block not in buffers:
        buffers[block] = chunks.buffer(block)
    return chunks, buffers[block]


def arrow_scorer(get_matrix, top_n: int, block: int, global_mean: float, backend: str = "auto"):
    """The executors' side of ``recommend``: Arrow record batches of (user_idx, reviewerID, bias, factors, cols)
    in, batches of OUT_SCHEMA rows out; ``get_matrix()`` gives the item matrix's factors_bias, item_idx and mlp
    (the broadcast's value)."""
    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        m = get_matrix()
        vfb, vidx = m["factors_bias"], m["item_idx"]
        rank = vfb.shape[1] - 1
        chunks, out = laid_out(vfb, block) if m["mlp"] is None and backend == "auto" else (None, None)
        for batch in batches:
            n = batch.num_rows
            if n == 0:
                continue
            factors = batch.column("factors")
            if factors.null_count or not (factors.value_lengths().to_numpy() == rank).all():
                raise ValueError(f"every user needs {rank} factors (the item factors' length)")
            uf = _flat_lists(factors, np.float32, "factors").reshape(n, rank)
            cols = batch.column("cols")
            seen_len = cols.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            seen_flat = _flat_lists(cols, np.int64, "cols")
            seen_at = np.concatenate([[0], np.cumsum(seen_len)])
            seen_row = np.repeat(np.arange(n), seen_len)
            idx = np.empty((n, top_n), np.int64)
            val = np.empty((n, top_n), np.float32)
            ufb = with_ones(uf) if chunks is not None else None
            for start in range(0, n, block):
                stop = min(n, start + block)
                lo, hi = seen_at[start], seen_at[stop]
                if chunks is not None:
                    idx[start:stop], val[start:stop] = top_k_product(
                        ufb[start:stop], chunks, top_n, seen_row[lo:hi] - start, seen_flat[lo:hi], out)
                    continue
                scores = block_scores(uf[start:stop], vfb, m["mlp"], seen_row[lo:hi] - start, seen_flat[lo:hi])
                idx[start:stop], val[start:stop] = top_k(scores, top_n, backend)
            rows, ranks = np.nonzero(idx >= 0)
            user_bias = batch.column("bias").to_numpy(zero_copy_only=False).astype(np.float32)
            yield pa.RecordBatch.from_arrays([
                pa.array(batch.column(S.USER_IDX).to_numpy(zero_copy_only=False).astype(np.int32)[rows]),
                batch.column(S.USER).take(pa.array(rows)),
                pa.array((ranks + 1).astype(np.int32)),
                pa.array(vidx[idx[rows, ranks]].astype(np.int32)),
                pa.array((val[rows, ranks] + user_bias[rows] + np.float32(global_mean)).astype(np.float32)),
            ], names=[S.USER_IDX, S.USER, S.RANK, S.ITEM_IDX, S.SCORE])

    return fn


def _flat_lists(lists: pa.Array, dtype, name: str) -> np.ndarray:
    """The values of an Arrow list column as one numpy array (a null list holds none; a null value is refused)."""
    flat = lists.flatten()
    if flat.null_count:
        raise ValueError(f"{name}: {flat.null_count} null values")
    return flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def item_columns(spark, matrix: dict, key: str) -> DataFrame:
    """(key, col): each item's column in ``matrix``, keyed by ``asin`` or ``item_idx``."""
    return spark.createDataFrame(pd.DataFrame({key: matrix[key], "col": np.arange(len(matrix[key]), dtype=np.int32)}))


def seen_columns(pairs: DataFrame, item_cols: DataFrame, key: str) -> DataFrame:
    """(user_idx, cols): the matrix columns of the items in (user_idx, key) ``pairs``, per user."""
    return (pairs.select(S.USER_IDX, key).join(F.broadcast(item_cols), key)
            .groupBy(S.USER_IDX).agg(F.array_sort(F.collect_set("col")).alias("cols")))


def encoded_users(users: DataFrame, latest: DataFrame, encoder) -> DataFrame:
    """``users`` (user_idx, reviewerID, bias, factors) with the factors computed by ``encoder`` from each
    user's latest items (``latest``: user_idx, history); the encoder (sized by the catalogue) is broadcast."""
    bc = users.sparkSession.sparkContext.broadcast(encoder)

    def fn(batches):
        encode = bc.value
        for pdf in batches:
            hist = np.stack(pdf[S.HISTORY].to_numpy()).astype(np.int64) if len(pdf) else np.empty((0, 1), np.int64)
            yield pd.DataFrame({S.USER_IDX: pdf[S.USER_IDX].to_numpy(np.int32), "factors": list(encode(hist))})

    factors = latest.mapInPandas(fn, f"{S.USER_IDX} int, factors array<float>")
    return users.drop("factors").join(factors, S.USER_IDX)
