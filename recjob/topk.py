"""Top-k per row of a score matrix (numpy), with exclusions and a deterministic tie-break on the column index,
and the Spark side: top-N per user inside executors with the item factors broadcast."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob import schema as S


GROUP = 64  # columns per group of the group-maxima selection (top_k_chunked)


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
    group whose maximum is >= t. Where exactly k groups reach t (the rule for continuous scores) the top k are
    selected among those k x ``group`` columns, taken in column order so that ties keep the lower column first;
    other rows (group maxima tied at t, fewer than k finite scores) take the reference path.
    """
    n_rows, n_cols = scores.shape
    m = n_cols // group
    n_groups = m + (n_cols > m * group)
    if k < 1 or m <= k or n_rows == 0:
        return _top_k_numpy(scores, k)
    gmax = np.empty((n_rows, n_groups), scores.dtype)
    gmax[:, :m] = scores[:, :m * group].reshape(n_rows, group, m).max(axis=1)
    if n_groups > m:
        gmax[:, m] = scores[:, m * group:].max(axis=1)
    part = np.argpartition(gmax, n_groups - k, axis=1)[:, n_groups - k:]  # the k largest group maxima
    t = np.take_along_axis(gmax, part, axis=1).min(axis=1)
    simple = ((gmax >= t[:, None]).sum(axis=1) == k) & np.isfinite(t)
    idx = np.empty((n_rows, k), np.int64)
    vals = np.empty((n_rows, k), scores.dtype)
    rows = np.flatnonzero(simple)
    if len(rows):
        g = part[rows][:, :, None]
        cols = np.where(g < m, g + m * np.arange(group), m * group + np.arange(group))  # tail: the last group
        cols = np.sort(cols.reshape(len(rows), -1), axis=1)  # column order: ties resolve to the lower column
        valid = cols < n_cols
        cand = np.where(valid, scores[rows[:, None], np.minimum(cols, n_cols - 1)], -np.inf).astype(scores.dtype)
        ci, cv = _top_k_numpy(cand, k)  # small: numpy, so executors need not import TensorFlow (seconds each)
        idx[rows] = np.take_along_axis(cols, ci, axis=1)
        vals[rows] = cv
    rest = np.flatnonzero(~simple)
    if len(rest):
        idx[rest], vals[rest] = _top_k_numpy(scores[rest], k)
    return np.where(np.isneginf(vals), -1, idx), vals


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
    scores = user_f @ item_f.T if mlp is None else mlp_scores(user_f, mlp)
    scores += item_bias[None, :]
    for r, cols in enumerate(seen):
        if len(cols):
            scores[r, cols] = -np.inf
    return top_k(scores, k, backend)


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
        "bias": items["bias"].to_numpy(np.float32),
        "item_idx": items[S.ITEM_IDX].to_numpy(np.int32),
        "asin": items[S.ITEM].to_numpy(),
        "mlp": mlp_part(mlp_weights, factors) if mlp_weights else None,
    }


def recommend(users: DataFrame, seen_cols: DataFrame, matrix: dict, top_n: int, block: int,
              global_mean: float, backend: str = "auto") -> DataFrame:
    """Rows (user_idx, reviewerID, rank, item_idx, score) for every user of ``users``.

    ``users``: (user_idx, reviewerID, bias, factors); ``seen_cols``: (user_idx, cols) with cols the item
    *column positions* in ``matrix`` to exclude. score = the model's score + user bias + ``global_mean``
    (the predicted rating for the rating models).
    """
    spark = users.sparkSession
    bc = spark.sparkContext.broadcast(matrix)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        m = bc.value
        vf, vb, vidx = m["factors"], m["bias"], m["item_idx"]
        for pdf in batches:
            for start in range(0, len(pdf), block):
                b = pdf.iloc[start:start + block]
                uf = np.stack(b["factors"].to_numpy()).astype(np.float32)
                seen = [np.asarray(c, dtype=np.int64) if c is not None else np.empty(0, np.int64) for c in b["cols"]]
                idx, val = score_block(uf, vf, vb, seen, top_n, m["mlp"], backend)
                ok = idx >= 0
                rows, ranks = np.nonzero(ok)
                yield pd.DataFrame({
                    S.USER_IDX: b[S.USER_IDX].to_numpy(np.int32)[rows],
                    S.USER: b[S.USER].to_numpy()[rows],
                    S.RANK: (ranks + 1).astype(np.int32),
                    S.ITEM_IDX: vidx[idx[ok]],
                    S.SCORE: (val[ok] + b["bias"].to_numpy(np.float32)[rows] + np.float32(global_mean)).astype(np.float32),
                })

    joined = users.join(seen_cols, S.USER_IDX, "left").select(S.USER_IDX, S.USER, "bias", "factors", "cols")
    return joined.mapInPandas(fn, OUT_SCHEMA)


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
