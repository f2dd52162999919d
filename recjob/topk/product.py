"""The block product: a block of users against the item factors, chunk by chunk, each chunk's scores selected as
they are made, and chunks no user of the block can reach skipped (``top_k_product``); the scores of a kind
whose score is dense layers over [user factor, item factor] (``layered_scores``)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from recjob.topk.selection import GROUP, _select_in_groups, _subgroups, _top_k_numpy, top_k

CHUNK_COLUMNS = 16384  # item columns per chunk of top_k_product (fastest of 2,048..16,384 at 50k and 156k items)
BOUND_NORM = 1.0  # items are stored by bias + BOUND_NORM x norm (ItemChunks): the bound of a user of norm 1
BOUND_MARGIN = 1e-5  # relative margin of chunk_bounds over float32 rounding


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


def score_block(user_f: np.ndarray, item_f: np.ndarray, item_bias: np.ndarray,
                seen: list[np.ndarray], k: int, layers: dict | None = None,
                backend: str | Callable = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a block of users: scores = U V^T + item bias (or the scoring layers' output + item bias
    when ``layers`` is given, see ``layers_part``), each user's seen columns excluded."""
    lengths = [len(c) for c in seen]
    seen_rows = np.repeat(np.arange(len(seen)), lengths)
    seen_cols = np.concatenate(seen).astype(np.int64) if sum(lengths) else np.empty(0, np.int64)
    if layers is None and backend == "auto":
        return top_k_product(with_ones(user_f), item_chunks(with_bias(item_f, item_bias)), k, seen_rows, seen_cols)
    scores = block_scores(user_f, with_bias(item_f, item_bias), layers, seen_rows, seen_cols)
    return top_k(scores, k, backend)


def with_bias(item_f: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """Item factors with the item bias as one more column: [U, 1] [V, b]^T is U V^T + b in one matrix product
    (cheaper than adding b to every score afterwards)."""
    return np.hstack([item_f, item_bias[:, None]]).astype(np.float32)


def with_ones(user_f: np.ndarray) -> np.ndarray:
    """User factors with a last column of ones, the item bias's factor in ``with_bias``'s product."""
    return np.hstack([user_f, np.ones((len(user_f), 1), np.float32)]).astype(np.float32)


def block_scores(user_f: np.ndarray, item_fb: np.ndarray, layers: dict | None,
                 seen_rows: np.ndarray, seen_cols: np.ndarray) -> np.ndarray:
    """The users x items scores of a block, -inf at the (row, column) pairs of seen items. ``item_fb``: the item
    factors and bias (``with_bias``)."""
    if layers is None:
        scores = with_ones(user_f) @ item_fb.T
    else:
        scores = layered_scores(user_f, layers)
        scores += item_fb[:, -1][None, :]
    scores[seen_rows, seen_cols] = -np.inf
    return scores


def layers_part(weights: list[tuple[np.ndarray, np.ndarray]], item_f: np.ndarray) -> dict:
    """What scoring needs of a kind's scoring layers, dense layers over [p_u, q_i] (``weights``: (kernel, bias)
    of each layer, ReLU between them, the last one linear with one output). The first layer splits into a user and an item
    half, so the item half (item_f @ W_item + b) is computed once per catalogue, not once per pair."""
    (w1, b1), rest = weights[0], weights[1:]
    k = item_f.shape[1]
    return {"user_w": np.asarray(w1[:k], np.float32), "item_h": (item_f @ w1[k:] + b1).astype(np.float32),
            "dense": [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in rest]}


def layered_scores(user_f: np.ndarray, layers: dict, max_cells: int = 1 << 23) -> np.ndarray:
    """The scoring layers' output for every (user of the block, item): users x items, a few users at a time so
    that the hidden activations stay under ``max_cells`` floats."""
    uh = user_f @ layers["user_w"]
    item_h = layers["item_h"]
    n_items, width = item_h.shape
    out = np.empty((len(user_f), n_items), np.float32)
    step = max(1, max_cells // max(1, n_items * width))
    for start in range(0, len(user_f), step):
        h = np.maximum(uh[start:start + step, None, :] + item_h[None, :, :], 0.0)
        for j, (w, b) in enumerate(layers["dense"]):
            h = h @ w + b
            if j < len(layers["dense"]) - 1:
                h = np.maximum(h, 0.0)
        out[start:start + step] = h[..., 0]
    return out


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
