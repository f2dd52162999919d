"""The Spark side of top-N: every user's list computed in the executors (``mapInArrow``) with the item matrix
broadcast and the block product of ``recjob.topk.product``; the item matrix, the seen items' columns, and the
user factors a history-encoding kind computes from each user's latest items."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recjob import schema as S
from recjob.topk.product import block_scores, laid_out, layers_part, top_k_product, with_bias, with_ones
from recjob.topk.selection import top_k

OUT_SCHEMA = f"{S.USER_IDX} int, {S.USER} string, {S.RANK} int, {S.ITEM_IDX} int, {S.SCORE} float"


def item_matrix(items: pd.DataFrame, layer_weights: list | None = None) -> dict:
    """Item factors as arrays with columns ordered by asin (the tie-break order); with ``layer_weights`` (a
    kind's scoring layers) scoring runs those layers instead of the dot product."""
    items = items.sort_values(S.ITEM, kind="stable").reset_index(drop=True)
    factors = np.stack(items["factors"].to_numpy()).astype(np.float32) if len(items) else np.zeros((0, 0), np.float32)
    return {
        "factors": factors,
        "factors_bias": with_bias(factors, items["bias"].to_numpy(np.float32)),
        "item_idx": items[S.ITEM_IDX].to_numpy(np.int32),
        "asin": items[S.ITEM].to_numpy(),
        "layers": layers_part(layer_weights, factors) if layer_weights else None,
    }


def recommend(users: DataFrame, seen_cols: DataFrame, matrix: dict, top_n: int, block: int,
              global_mean: float, backend: str | Callable = "auto") -> DataFrame:
    """Rows (user_idx, reviewerID, rank, item_idx, score) for every user of ``users``.

    ``users``: (user_idx, reviewerID, bias, factors); ``seen_cols``: (user_idx, cols) with cols the item
    *column positions* in ``matrix`` to exclude. score = the model's score + user bias + ``global_mean``
    (the predicted rating for the rating models). The executors read and write Arrow record batches
    (``mapInArrow``): the factors of a batch arrive as one flat array, no Python object per user.
    """
    bc = users.sparkSession.sparkContext.broadcast({k: matrix[k] for k in ("factors_bias", "item_idx", "layers")})
    fn = arrow_scorer(lambda: bc.value, top_n, block, global_mean, backend)
    # A user without seen items gets an empty list, not the left join's null: Spark's Arrow path is much slower
    # on null lists than on empty ones (bench/results/score.md).
    joined = users.join(seen_cols, S.USER_IDX, "left").select(
        S.USER_IDX, S.USER, "bias", "factors", F.coalesce("cols", F.array().cast("array<int>")).alias("cols"))
    return joined.mapInArrow(fn, OUT_SCHEMA)


def arrow_scorer(get_matrix, top_n: int, block: int, global_mean: float, backend: str | Callable = "auto"):
    """The executors' side of ``recommend``: Arrow record batches of (user_idx, reviewerID, bias, factors, cols)
    in, batches of OUT_SCHEMA rows out; ``get_matrix()`` gives the item matrix's factors_bias, item_idx and
    layers (the broadcast's value)."""
    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        m = get_matrix()
        vfb, vidx = m["factors_bias"], m["item_idx"]
        rank = vfb.shape[1] - 1
        chunks, out = laid_out(vfb, block) if m["layers"] is None and backend == "auto" else (None, None)
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
                scores = block_scores(uf[start:stop], vfb, m["layers"], seen_row[lo:hi] - start, seen_flat[lo:hi])
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
