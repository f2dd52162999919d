"""score: factor tables -> top-N unseen items per user, computed inside Spark executors.

The item factors (sized by the catalogue) are broadcast; users stream through ``mapInArrow`` in blocks,
each block one matrix product (for a kind with scoring layers, the MLP: those layers over every (user, item)
pair of the block, the first layer split so that the item half is computed once) plus a per-row top-k. There
is no users x items cross join. Columns of the item matrix are in asin order, so equal scores break on the
original item id. Seen items are every item the user reviewed in the ingested reviews of this ds, not only
those in the training sample. For a kind that predicts ratings the score is the predicted rating.

A kind whose user factor is computed from the user's latest items (seq) gets it here, in the executors, from
each user's latest items of every split (the shards' ``latest_items``): the published lists follow what the
user did last, validation and test items included. The ``user_factors`` table, which evaluate reads, holds the
factors of the train items only.

Every user of the ds's sample (``interactions``) gets a list. A user the model has no factors for (every review
they wrote fell in the validation or test split) is scored as the model scores a user with no train history:
user factor and user bias zero, so the score is the item bias (plus the global mean for a rating model; for a
kind with scoring layers, their output at a zero user factor); a kind that encodes the latest items computes
the factor from those, as for everyone else. The log and the stage record say how many users were scored so.
"""
from __future__ import annotations

import logging

import numpy as np

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import models, neighbours, topk, warehouse
from recjob import schema as S
from recjob.artifacts import Artifacts
from recjob.config import Config
from recjob import reviews as known_reviews
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("score", ds) as record:
        store = Artifacts(cfg, spark, ds)
        kind = models.get(warehouse.read_partition(spark, cfg.table(Table.TRAINING_RUNS), ds).first()["model"])
        mean = (warehouse.read_partition(spark, cfg.table(Table.SHARDS), ds).where(F.col(S.SPLIT) == S.TRAIN)
                .first()["rating_mean"] if kind.predicts_ratings else 0.0)
        items_pdf = warehouse.read_partition(spark, cfg.table(Table.ITEM_FACTORS), ds).toPandas()  # sized by items
        matrix = topk.item_matrix(items_pdf, kind.scoring_layers(store.load_model_file))
        trained = warehouse.read_partition(spark, cfg.table(Table.USER_FACTORS), ds)
        sampled = (warehouse.read_partition(spark, cfg.table(Table.INTERACTIONS), ds).select(S.USER).distinct()
                   .join(warehouse.read_partition(spark, cfg.table(Table.USER_INDEX), ds).select(S.USER, S.USER_IDX), S.USER))
        cold = cold_users(sampled, trained).cache()
        n_cold = cold.count()
        users = trained.unionByName(cold)
        encoder = kind.history_encoder(store.load_model_file)
        if encoder is not None:
            users = topk.encoded_users(users, spark.read.parquet(store.latest_items), encoder)
        reviews = known_reviews.known(cfg, spark, ds)
        reviewed = reviews.select(S.USER, S.ITEM).join(users.select(S.USER, S.USER_IDX), S.USER)
        seen = topk.seen_columns(reviewed, topk.item_columns(spark, matrix, S.ITEM), S.ITEM)
        recs = topk.recommend(users, seen, matrix, cfg.score.top_n, cfg.score.block_users, float(mean))
        n = warehouse.write_partition(recs, cfg.table(Table.SCORES), ds)
        record["neighbours"] = write_neighbours(cfg, spark, ds, kind, items_pdf, store)
        n_users = users.count()
        log.info("score: %d users x %d items -> %d recommendations (top %d); %d of the users have no factors "
                 "(no review in the train split) and got the model's lists for a user without train history",
                 n_users, len(matrix["asin"]), n, cfg.score.top_n, n_cold)
        cold.unpersist()
        record["read"] = {cfg.table(Table.USER_FACTORS): n_users - n_cold, cfg.table(Table.ITEM_FACTORS): len(matrix["asin"])}
        record["wrote"] = {cfg.table(Table.SCORES): n}
        record["users_without_factors"] = n_cold
    return record


def write_neighbours(cfg: Config, spark: SparkSession, ds: str, kind, items_pdf, store: Artifacts) -> dict:
    """Each item's similar items by the kind's factor similarity and, when configured and the item histories
    are there, by co-occurrence, into the ``neighbours`` working table; publish chooses the method."""
    nb = cfg.neighbours
    factors = np.stack(items_pdf["factors"].to_numpy()).astype(np.float32)
    vectors = kind.similarity_factors(factors, items_pdf["bias"].to_numpy(np.float32))
    parts = [neighbours.by_factors(spark, items_pdf[[S.ITEM_IDX, S.ITEM]], vectors, nb.top_n, cfg.score.block_users)]
    index = warehouse.read_partition(spark, cfg.table(Table.ITEM_INDEX), ds).select(S.ITEM, S.ITEM_IDX)
    if nb.cooccurrence and warehouse.path_exists(spark, store.item_histories):
        n_items = index.count()  # the item histories' padding value (shards)
        parts.append(neighbours.by_cooccurrence(spark.read.parquet(store.item_histories), index, n_items,
                                                nb.top_n, nb.max_user_items))
    elif nb.cooccurrence:
        log.warning("score: no item histories in the shards (shards.history_length=0): no co-occurrence neighbours")
    table = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    n = warehouse.write_partition(table, cfg.table(Table.NEIGHBOURS), ds)
    log.info("score: %d neighbour rows (top %d of %d items, methods: %s)", n, nb.top_n, len(items_pdf),
             ", ".join(neighbours.METHODS[:len(parts)]))
    return {cfg.table(Table.NEIGHBOURS): n}


def cold_users(sampled: DataFrame, trained: DataFrame) -> DataFrame:
    """The users of ``sampled`` (reviewerID, user_idx) missing from ``trained`` (the user factors: user_idx,
    reviewerID, bias, factors), as user factor rows of zeros: bias 0, factors 0 of the trained factors' length."""
    first = trained.select("factors").first()
    if first is None:
        raise warehouse.MissingInputError("score: the user_factors partition is empty: rerun the train stage")
    zeros = F.array_repeat(F.lit(0.0).cast("float"), len(first["factors"]))
    return (sampled.join(trained.select(S.USER_IDX), S.USER_IDX, "left_anti")
            .select(S.USER_IDX, S.USER, F.lit(0.0).cast(trained.schema["bias"].dataType).alias("bias"),
                    zeros.cast(trained.schema["factors"].dataType).alias("factors")))
