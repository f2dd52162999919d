"""publish: scores -> the ``recommendations`` table that analysts query (original ids, titles, ranks).

One ds partition per run, replaced on rerun (dynamic partition overwrite), other dates untouched.
Before writing, the scores are checked: ranks 1..n per user with no gaps or duplicates and no
duplicate items per user; a failed check stops the publish and keeps the previous partition.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import warehouse
from recjob.config import Config
from recjob.stages import stage_timer

log = logging.getLogger(__name__)

COLUMNS = [S.USER, S.RANK, S.ITEM, S.TITLE, S.SCORE]


def transform(scores: DataFrame, item_index: DataFrame, items: DataFrame) -> DataFrame:
    """Attach original asin and title to each (user, rank, item_idx, score) row."""
    return (scores.join(item_index.select(S.ITEM_IDX, S.ITEM), S.ITEM_IDX)
            .join(items.select(S.ITEM, S.TITLE), S.ITEM, "left")
            .select(*COLUMNS))


def check(recs: DataFrame) -> list[str]:
    """Problems that must stop a publish (empty list: fine)."""
    per_user = recs.groupBy(S.USER).agg(F.count(F.lit(1)).alias("n"), F.min(S.RANK).alias("lo"),
                                        F.max(S.RANK).alias("hi"), F.countDistinct(S.RANK).alias("ranks"),
                                        F.countDistinct(S.ITEM).alias("items"))
    bad = per_user.where((F.col("lo") != 1) | (F.col("hi") != F.col("n")) | (F.col("ranks") != F.col("n"))
                         | (F.col("items") != F.col("n"))).count()
    problems = []
    if bad:
        problems.append(f"{bad} users have gaps or duplicates in their ranks or items")
    if recs.where(F.col(S.SCORE).isNull() | F.isnan(S.SCORE)).limit(1).count():
        problems.append("some scores are null or NaN")
    return problems


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("publish", ds) as report:
        scores = warehouse.read_partition(spark, cfg.table("scores"), ds)
        item_index = warehouse.read_partition(spark, cfg.table("item_index"), ds)
        items = warehouse.read_partition(spark, cfg.table("items"), ds)
        recs = transform(scores, item_index, items).cache()
        problems = check(recs)
        if problems:
            raise RuntimeError(f"publish: not publishing ds={ds}: " + "; ".join(problems))
        n = warehouse.write_partition(recs, cfg.table("recommendations"), ds)
        users = recs.select(S.USER).distinct().count()
        untitled = recs.where(F.col(S.TITLE).isNull()).count()
        if untitled:
            log.warning("publish: %d of %d recommendations have no title (item missing from metadata)", untitled, n)
        recs.unpersist()
        report["read"] = {cfg.table("scores"): scores.count()}
        report["wrote"] = {cfg.table("recommendations"): n, "users": users}
    return report
