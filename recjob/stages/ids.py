"""ids: contiguous user and item indices, stable across runs.

``user_index`` and ``item_index`` map each original id to 0..n-1. A run starts from the newest map written
before its ds: every id there keeps its index, ids seen for the first time are appended after the current
maximum, in id order. Rerunning a ds gives the same map, since it only reads earlier partitions.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recjob import schema as S
from recjob import warehouse
from recjob.config import Config
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

FIRST_DS = "first_ds"


def transform(ids: DataFrame, previous: DataFrame | None, id_col: str, idx_col: str, ds: str) -> DataFrame:
    """Extend ``previous`` (id_col, idx_col, first_ds) with the ids of ``ids`` it lacks.

    New ids get indices max+1, max+2, ... in ascending id order, so the map stays contiguous.
    """
    spark = ids.sparkSession
    distinct = ids.select(id_col).where(F.col(id_col).isNotNull()).distinct()
    if previous is None:
        previous = spark.createDataFrame([], T.StructType([
            T.StructField(id_col, T.StringType()), T.StructField(idx_col, T.IntegerType()),
            T.StructField(FIRST_DS, T.StringType())]))
        offset = 0
    else:
        previous = previous.select(id_col, idx_col, FIRST_DS)
        top = previous.agg(F.max(idx_col)).first()[0]
        offset = 0 if top is None else int(top) + 1
    new = distinct.join(previous.select(id_col), id_col, "left_anti").orderBy(id_col)
    indexed = new.rdd.map(lambda r: r[0]).zipWithIndex().map(lambda p: (p[0], offset + p[1], ds))
    schema = T.StructType([T.StructField(id_col, T.StringType()), T.StructField(idx_col, T.IntegerType()),
                           T.StructField(FIRST_DS, T.StringType())])
    appended = spark.createDataFrame(indexed, schema)
    return previous.unionByName(appended)


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("ids", ds) as record:
        interactions = warehouse.read_partition(spark, cfg.table(Table.INTERACTIONS), ds)
        record["read"] = {cfg.table(Table.INTERACTIONS): interactions.count()}
        record["wrote"] = {}
        for id_col, idx_col, name in ((S.USER, S.USER_IDX, "user_index"), (S.ITEM, S.ITEM_IDX, "item_index")):
            table = cfg.table(name)
            prev_ds = warehouse.latest_before(spark, table, ds)
            previous = spark.table(table).where(F.col(S.DS) == prev_ds).drop(S.DS) if prev_ds else None
            n_prev = previous.count() if previous is not None else 0
            mapping = transform(interactions, previous, id_col, idx_col, ds).localCheckpoint()
            n = warehouse.write_partition(mapping, table, ds)
            log.info("ids: %s: %d ids from %s, %d new, %d in all", name, n_prev,
                     f"ds={prev_ds}" if prev_ds else "no earlier run", n - n_prev, n)
            record["wrote"][table] = n
            record[f"{name}_base"] = prev_ds
    return record
