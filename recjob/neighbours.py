"""Items like an item: each item's top-N most similar items, the item itself excluded, by two methods.

- ``factors``: the model kind's similarity of item factors (``ModelKind.similarity_factors``: cosine of the item
  factors unless the kind says otherwise), computed in the executors with the scorer's exact top-k (each item
  scored as a "user" against every item, itself excluded; ties to the item first in asin order, as the scorer's).
- ``cooccurrence``: SAR-style Jaccard over the train split, |U_i and U_j| / |U_i or U_j| with U_i the users who
  took item i, counted over each user's latest ``max_user_items`` train items (the item histories the shards
  stage writes), so one heavy user cannot make the pairs explode; ties likewise to the lower asin.

``ranking_inputs`` turns either into per-user lists for the item-to-item figure: the neighbours of the user's
last train item, judged against the user's held-out items like any top-k list.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import topk

FACTORS, COOCCURRENCE = "factors", "cooccurrence"  # the methods, as the neighbours tables name them
METHODS = (FACTORS, COOCCURRENCE)
NEIGHBOUR_IDX = "neighbour_idx"  # the similar item's index, beside item_idx (the item it is similar to)
COLUMNS = f"method string, {S.ITEM_IDX} int, {S.RANK} int, {NEIGHBOUR_IDX} int, {S.SCORE} float"


def evaluated_name(method: str) -> str:
    """The ``model`` column's value of a method's item-to-item figures in the ``evaluation`` table."""
    return f"neighbours:{method}"


def by_factors(spark: SparkSession, items: pd.DataFrame, vectors: np.ndarray, top_n: int, block: int) -> DataFrame:
    """Rows of COLUMNS: each item's ``top_n`` nearest items by the dot product of ``vectors`` (items x d, in the
    row order of ``items``: item_idx, asin), itself excluded."""
    ordered = pd.DataFrame({S.ITEM_IDX: items[S.ITEM_IDX].to_numpy(np.int32), S.ITEM: items[S.ITEM].to_numpy(),
                            "bias": np.zeros(len(items), np.float32),
                            "factors": list(np.asarray(vectors, np.float32))})
    matrix = topk.item_matrix(ordered)
    as_users = spark.createDataFrame(pd.DataFrame({
        S.USER_IDX: ordered[S.ITEM_IDX], S.USER: ordered[S.ITEM], "bias": ordered["bias"],
        "factors": ordered["factors"]}), f"{S.USER_IDX} int, {S.USER} string, bias float, factors array<float>")
    columns = topk.item_columns(spark, matrix, S.ITEM_IDX)
    itself = spark.createDataFrame(pd.DataFrame({S.USER_IDX: ordered[S.ITEM_IDX], S.ITEM_IDX: ordered[S.ITEM_IDX]}))
    seen = topk.seen_columns(itself, columns, S.ITEM_IDX)
    lists = topk.recommend(as_users, seen, matrix, top_n, block, 0.0)
    return lists.select(F.lit(FACTORS).alias("method"), F.col(S.USER_IDX).alias(S.ITEM_IDX), S.RANK,
                        F.col(S.ITEM_IDX).alias(NEIGHBOUR_IDX), S.SCORE)


def by_cooccurrence(histories: DataFrame, item_index: DataFrame, n_items: int, top_n: int,
                    max_user_items: int) -> DataFrame:
    """Rows of COLUMNS: each item's ``top_n`` items by Jaccard similarity of their users. ``histories``:
    (user_idx, history: the user's latest train items, padded with ``n_items``); ``item_index``: (asin,
    item_idx), for the tie-break."""
    taken = (histories.select(S.USER_IDX, F.posexplode(S.HISTORY).alias("_pos", S.ITEM_IDX))
             .where((F.col(S.ITEM_IDX) < n_items) & (F.col("_pos") < max_user_items))
             .select(S.USER_IDX, S.ITEM_IDX).distinct().cache())
    users_of = taken.groupBy(S.ITEM_IDX).agg(F.count(F.lit(1)).alias("n"))
    other = taken.select(S.USER_IDX, F.col(S.ITEM_IDX).alias(NEIGHBOUR_IDX))
    pairs = (taken.join(other, S.USER_IDX).where(F.col(S.ITEM_IDX) != F.col(NEIGHBOUR_IDX))
             .groupBy(S.ITEM_IDX, NEIGHBOUR_IDX).agg(F.count(F.lit(1)).alias("both")))
    n_j = users_of.select(F.col(S.ITEM_IDX).alias(NEIGHBOUR_IDX), F.col("n").alias("n_j"))
    asin_j = item_index.select(F.col(S.ITEM_IDX).alias(NEIGHBOUR_IDX), F.col(S.ITEM).alias("_asin"))
    scored = (pairs.join(users_of, S.ITEM_IDX).join(n_j, NEIGHBOUR_IDX).join(asin_j, NEIGHBOUR_IDX)
              .withColumn(S.SCORE, (F.col("both") / (F.col("n") + F.col("n_j") - F.col("both"))).cast("float")))
    order = Window.partitionBy(S.ITEM_IDX).orderBy(F.col(S.SCORE).desc(), F.col("_asin"))
    ranked = scored.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= top_n)
    return ranked.select(F.lit(COOCCURRENCE).alias("method"), F.col(S.ITEM_IDX).cast("int"),
                         F.col(S.RANK).cast("int"), F.col(NEIGHBOUR_IDX).cast("int"), S.SCORE)


def last_items(histories: DataFrame, n_items: int) -> DataFrame:
    """(user_idx, item_idx): each user's latest train item (the first of the item history), where there is one."""
    first = F.element_at(S.HISTORY, 1)
    return histories.where(first < n_items).select(S.USER_IDX, first.cast("int").alias(S.ITEM_IDX))


def ranking_inputs(neighbours: DataFrame, last: DataFrame, method: str) -> DataFrame:
    """(user_idx, item_idx, rank): the neighbours by ``method`` of each user's last train item, as the user's list."""
    return (last.join(neighbours.where(F.col("method") == method), S.ITEM_IDX)
            .select(S.USER_IDX, F.col(NEIGHBOUR_IDX).alias(S.ITEM_IDX), S.RANK))
