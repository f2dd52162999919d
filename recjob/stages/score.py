"""score: factor tables -> top-N unseen items per user, computed inside Spark executors.

The item factors (sized by the catalogue) are broadcast; users stream through ``mapInPandas`` in blocks,
each block one matrix product (for the MLP model: the MLP over every (user, item) pair of the block, its
first layer split so that the item half is computed once) plus a per-row top-k. There is no users x items
cross join. Columns of the item matrix are in asin order, so equal scores break on the original item id.
Seen items are every item the user reviewed in the ingested reviews of this ds, not only those in the
training sample.

The seq model's user factors are computed here, in the executors, from each user's latest items of every
split (shards/ds=.../latest_items): the published lists follow what the user did last, validation and test
items included. The ``user_factors`` table, which evaluate reads, holds the factors of the train items only.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import model as M
from recjob import schema as S
from recjob import topk, warehouse
from recjob.config import Config
from recjob.model import RATING_MODELS
from recjob.stages import shards, stage_timer, train

log = logging.getLogger(__name__)

def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("score", ds) as report:
        runs = warehouse.read_partition(spark, cfg.table("training_runs"), ds).first()
        kind = runs["model"]
        # dot, mlp, bpmf: the score is the predicted rating (mean + biases + dot product or MLP output);
        # softmax, bpr: the ranking score.
        mean = (warehouse.read_partition(spark, cfg.table("shards"), ds).where(F.col(S.SPLIT) == S.TRAIN)
                .first()["rating_mean"] if kind in RATING_MODELS else 0.0)
        items_pdf = warehouse.read_partition(spark, cfg.table("item_factors"), ds).toPandas()  # sized by items
        matrix = topk.item_matrix(items_pdf, train.mlp_for_scoring(cfg, ds, kind))
        users = warehouse.read_partition(spark, cfg.table("user_factors"), ds)
        if kind in M.SEQUENCE_MODELS:
            users = latest_item_factors(spark, cfg, ds, users)
        reviews = warehouse.read_partition(spark, cfg.table("reviews"), ds)
        reviewed = reviews.select(S.USER, S.ITEM).join(users.select(S.USER, S.USER_IDX), S.USER)
        seen = topk.seen_columns(reviewed, topk.item_columns(spark, matrix, S.ITEM), S.ITEM)
        recs = topk.recommend(users, seen, matrix, cfg.score.top_n, cfg.score.block_users, float(mean))
        n = warehouse.write_partition(recs, cfg.table("scores"), ds)
        n_users = users.count()
        log.info("score: %d users x %d items -> %d recommendations (top %d)", n_users, len(matrix["asin"]), n,
                 cfg.score.top_n)
        report["read"] = {cfg.table("user_factors"): n_users, cfg.table("item_factors"): len(matrix["asin"])}
        report["wrote"] = {cfg.table("scores"): n}
    return report


def latest_item_factors(spark: SparkSession, cfg: Config, ds: str, users: DataFrame) -> DataFrame:
    """``users`` (user_idx, reviewerID, bias, factors) with the seq model's factors recomputed from each
    user's latest items of every split; the history embedding is broadcast (sized by the catalogue)."""
    emb, markov = M.load_seq_weights(warehouse.read_bytes(f"{cfg.ds_path('models', ds)}/{train.SEQ_FILE}"))
    bc = spark.sparkContext.broadcast((emb, markov))

    def fn(batches):
        e, w = bc.value
        for pdf in batches:
            hist = np.stack(pdf[M.HIST_IN].to_numpy()).astype(np.int64) if len(pdf) else np.empty((0, 1), np.int64)
            f = M.seq_user_factors(e, w, hist)
            yield pd.DataFrame({S.USER_IDX: pdf[S.USER_IDX].to_numpy(np.int32), "factors": list(f)})

    latest = spark.read.parquet(shards.histories_path(cfg, ds, every_split=True))
    factors = latest.mapInPandas(fn, f"{S.USER_IDX} int, factors array<float>")
    return users.drop("factors").join(factors, S.USER_IDX)
