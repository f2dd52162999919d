"""score: factor tables -> top-N unseen items per user, computed inside Spark executors.

The item factors (sized by the catalogue) are broadcast; users stream through ``mapInPandas`` in blocks,
each block one matrix product plus a per-row top-k. There is no users x items cross join. Columns of
the item matrix are in asin order, so equal scores break on the original item id. Seen items are every item
the user reviewed in the ingested reviews of this ds, not only those in the training sample.
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import topk, warehouse
from recjob.config import Config
from recjob.stages import stage_timer

log = logging.getLogger(__name__)

OUT_SCHEMA = f"{S.USER_IDX} int, {S.USER} string, {S.RANK} int, {S.ITEM_IDX} int, {S.SCORE} float"


def item_matrix(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """Item factors as arrays with columns ordered by asin (the tie-break order)."""
    items = items.sort_values(S.ITEM, kind="stable").reset_index(drop=True)
    return {
        "factors": np.stack(items["factors"].to_numpy()).astype(np.float32) if len(items) else np.zeros((0, 0), np.float32),
        "bias": items["bias"].to_numpy(np.float32),
        "item_idx": items[S.ITEM_IDX].to_numpy(np.int32),
        "asin": items[S.ITEM].to_numpy(),
    }


def recommend(users: DataFrame, seen_cols: DataFrame, matrix: dict, top_n: int, block: int,
              global_mean: float) -> DataFrame:
    """Rows (user_idx, reviewerID, rank, item_idx, score) for every user of ``users``.

    ``users``: (user_idx, reviewerID, bias, factors); ``seen_cols``: (user_idx, cols) with cols the item
    *column positions* in ``matrix`` to exclude. score is the predicted rating.
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
                idx, val = topk.score_block(uf, vf, vb, seen, top_n)
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


def seen_columns(reviews: DataFrame, users: DataFrame, item_cols: DataFrame) -> DataFrame:
    """(user_idx, cols): the matrix columns of every item each user reviewed."""
    return (reviews.select(S.USER, S.ITEM)
            .join(users.select(S.USER, S.USER_IDX), S.USER)
            .join(F.broadcast(item_cols), S.ITEM)
            .groupBy(S.USER_IDX).agg(F.array_sort(F.collect_set("col")).alias("cols")))


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("score", ds) as report:
        runs = warehouse.read_partition(spark, cfg.table("training_runs"), ds).first()
        if runs["model"] != "dot":
            raise NotImplementedError(f"score: model {runs['model']!r} is trained but scoring supports only the "
                                      "dot model so far (train.model=dot)")
        mean = warehouse.read_partition(spark, cfg.table("shards"), ds).where(F.col(S.SPLIT) == S.TRAIN).first()["rating_mean"]
        items_pdf = warehouse.read_partition(spark, cfg.table("item_factors"), ds).toPandas()  # sized by items
        matrix = item_matrix(items_pdf)
        users = warehouse.read_partition(spark, cfg.table("user_factors"), ds)
        cols = spark.createDataFrame(pd.DataFrame({S.ITEM: matrix["asin"], "col": np.arange(len(matrix["asin"]), dtype=np.int32)}))
        reviews = warehouse.read_partition(spark, cfg.table("reviews"), ds)
        seen = seen_columns(reviews, users, cols)
        recs = recommend(users, seen, matrix, cfg.score.top_n, cfg.score.block_users, float(mean))
        n = warehouse.write_partition(recs, cfg.table("scores"), ds)
        n_users = users.count()
        log.info("score: %d users x %d items -> %d recommendations (top %d)", n_users, len(matrix["asin"]), n,
                 cfg.score.top_n)
        report["read"] = {cfg.table("user_factors"): n_users, cfg.table("item_factors"): len(matrix["asin"])}
        report["wrote"] = {cfg.table("scores"): n}
    return report
