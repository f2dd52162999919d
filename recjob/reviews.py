"""The reviews a run for a ds knows, which sample, score and publish read.

Whole-dump input (``input.incremental=false``): the ``reviews`` partition of the ds, the dump ingested for it.
Incremental input: every ``reviews`` partition up to the ds, each one period's arrivals ingested once; of the
reviews of one (user, item) in several periods the latest by review time (then by period) is the one known,
as ingest keeps the latest of a pair within a period. A backfill of an earlier ds knows only the periods up to
it.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import warehouse
from recjob.config import Config
from recjob.names import DS, Table


def known(cfg: Config, spark: SparkSession, ds: str) -> DataFrame:
    """The reviews known at ``ds`` (the review columns, no ds); a clear error when ``ds`` was not ingested."""
    table = cfg.table(Table.REVIEWS)
    this_period = warehouse.read_partition(spark, table, ds)
    if not cfg.input.incremental:
        return this_period
    latest = Window.partitionBy(S.USER, S.ITEM).orderBy(F.col(S.TIME).desc(), F.col(DS).desc())
    return (spark.table(table).where(F.col(DS) <= ds)
            .withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1).drop("_n", DS))


def periods(cfg: Config, spark: SparkSession, ds: str) -> list[str]:
    """The ds partitions whose reviews ``known`` reads for ``ds``."""
    if not cfg.input.incremental:
        return [ds]
    return sorted(d for d in warehouse.partition_dates(spark, cfg.table(Table.REVIEWS)) if d <= ds)
