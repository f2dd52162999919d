"""shards: interactions + id maps -> parquet training shards (train / validation / test) for Petastorm.

Each split is a folder of parquet files with columns (user_idx int32, item_idx int32, rating float32),
rows in a seeded shuffled order, files of about ``rows_per_file`` rows and row groups of about
``row_group_mb``: Petastorm reads row groups as its unit of work and shuffles them. The split statistics
(rows, users, items, rating mean, map sizes) go to the ``shards`` table, which training reads.
"""
from __future__ import annotations

import logging
import math

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recjob import schema as S
from recjob import warehouse
from recjob.artifacts import Artifacts
from recjob.config import Config, ShardsConfig
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

_BUCKETS = 1_000_000


def random_split(df: DataFrame, validation: float, test: float, seed: int) -> DataFrame:
    """Assign each (user, item) row to a split by a seeded hash: the same row lands in the same split in
    every run, whatever the partitioning."""
    u = F.pmod(F.xxhash64(S.USER, S.ITEM, F.lit(seed)), F.lit(_BUCKETS)) / _BUCKETS
    split = (F.when(u < test, F.lit(S.TEST))
             .when(u < test + validation, F.lit(S.VALIDATION))
             .otherwise(F.lit(S.TRAIN)))
    return df.withColumn(S.SPLIT, split)


def stratified_split(df: DataFrame, validation: float, test: float, seed: int) -> DataFrame:
    """Per user, in a seeded hash order: the first round(test * n) rows -> test, the next
    round(validation * n) -> validation, the rest -> train (every user keeps at least one train row).
    Microsoft Recommenders' stratified split with test=0.25 is the 75/25 protocol."""
    key = F.xxhash64(S.USER, S.ITEM, F.lit(seed))
    pos = F.row_number().over(Window.partitionBy(S.USER).orderBy(key, S.ITEM)) - 1
    n = F.count(F.lit(1)).over(Window.partitionBy(S.USER))
    n_test = F.least(F.round(n * test), n - 1)
    n_val = F.least(F.round(n * validation), n - 1 - n_test)
    split = (F.when(pos < n_test, F.lit(S.TEST)).when(pos < n_test + n_val, F.lit(S.VALIDATION))
             .otherwise(F.lit(S.TRAIN)))
    return df.withColumn(S.SPLIT, split)


def given_split(df: DataFrame, heldout: DataFrame, validation: float, seed: int) -> DataFrame:
    """Rows in ``heldout`` (user, item) -> test; the others -> validation or train by seeded hash."""
    marked = df.join(heldout.select(S.USER, S.ITEM).distinct().withColumn("_test", F.lit(True)), [S.USER, S.ITEM], "left")
    rest = random_split(marked, validation, 0.0, seed)
    return rest.withColumn(S.SPLIT, F.when(F.col("_test"), F.lit(S.TEST)).otherwise(F.col(S.SPLIT))).drop("_test")


def temporal_split(df: DataFrame, seed: int) -> DataFrame:
    """Leave-last-out per user: the latest row -> test, the one before -> validation, the rest -> train.
    Users with fewer than 3 rows keep all their rows in train.

    Ties in time break on a seeded hash of (user, item), not on the item id: Amazon copies one review onto
    every variant of a product with the same time, and breaking such ties on asin would hold out the same
    variant for everybody, an item then (almost) absent from training."""
    w = Window.partitionBy(S.USER).orderBy(F.col(S.TIME).desc(), F.xxhash64(S.USER, S.ITEM, F.lit(seed)))
    n = F.count(F.lit(1)).over(Window.partitionBy(S.USER))
    pos = F.row_number().over(w)
    split = (F.when(n < 3, F.lit(S.TRAIN)).when(pos == 1, F.lit(S.TEST))
             .when(pos == 2, F.lit(S.VALIDATION)).otherwise(F.lit(S.TRAIN)))
    return df.withColumn(S.SPLIT, split)


def transform(interactions: DataFrame, users: DataFrame, items: DataFrame, cfg: ShardsConfig,
              heldout: DataFrame | None = None) -> DataFrame:
    """Rows (user_idx, item_idx, rating, split, reviewerID, asin, unixReviewTime); every row maps to an index."""
    if cfg.split == "random":
        split = random_split(interactions, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    elif cfg.split == "stratified":
        split = stratified_split(interactions, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    elif cfg.split == "given":
        split = given_split(interactions, heldout, cfg.validation_fraction, cfg.seed)
    elif cfg.split == "temporal":
        split = temporal_split(interactions, cfg.seed)
    else:  # the configuration check refuses any other name
        raise ValueError(f"shards.split={cfg.split!r} is not a split")
    return (split.join(users.select(S.USER, S.USER_IDX), S.USER, "inner")
            .join(items.select(S.ITEM, S.ITEM_IDX), S.ITEM, "inner")
            .select(F.col(S.USER_IDX).cast("int"), F.col(S.ITEM_IDX).cast("int"),
                    F.col(S.RATING).cast("float").alias(S.LABEL), S.SPLIT, S.USER, S.ITEM, S.TIME))


def _newest_first(seed: int) -> Window:
    """Each user's rows newest first, in the order ``temporal_split`` holds them out by."""
    return Window.partitionBy(S.USER_IDX).orderBy(F.col(S.TIME).desc(), F.xxhash64(S.USER, S.ITEM, F.lit(seed)))


def _padded(items, length: int, pad: int):
    return F.concat(items, F.array_repeat(F.lit(pad), F.lit(length) - F.size(items)))


def with_history(train: DataFrame, length: int, n_items: int, seed: int) -> DataFrame:
    """The train rows with a ``history`` column, the user's up to ``length`` train items before the row, most
    recent first, padded with ``n_items`` (what the seq model learns from). Only train rows enter, so no
    validation or test item leaks into training, whatever the split."""
    # in newest-first order the rows after this one are the user's earlier items, most recent first
    before = F.collect_list(S.ITEM_IDX).over(_newest_first(seed).rowsBetween(1, length))
    return train.withColumn(S.HISTORY, _padded(before, length, n_items).cast("array<int>"))


def latest_items(rows: DataFrame, length: int, n_items: int, seed: int) -> DataFrame:
    """Per user, the latest ``length`` items of ``rows``, most recent first, padded with ``n_items``: of the
    train rows, the history the seq model's user factors are computed from (trained and validated on); of the
    train and validation rows, the one it is tested from; of every split, the one its published lists are
    scored from."""
    ranked = rows.withColumn("_pos", F.row_number().over(_newest_first(seed))).where(F.col("_pos") <= length)
    items = F.transform(F.array_sort(F.collect_list(F.struct("_pos", S.ITEM_IDX))), lambda x: x[S.ITEM_IDX])
    return (ranked.groupBy(S.USER_IDX)
            .agg(_padded(items, length, n_items).cast("array<int>").alias(S.HISTORY)))


def _write_replacing(writer, spark: SparkSession, path: str) -> None:
    """Write parquet with ``writer`` next to ``path``, then move it into place (readers never see half)."""
    staged = path + ".tmp"
    warehouse.delete_path(spark, staged)
    writer.parquet(staged)
    warehouse.replace_folder(spark, staged, path)


def write_split(df: DataFrame, path: str, rows: int, cfg: ShardsConfig, seed: int) -> int:
    """Write one split's rows as parquet in a seeded shuffled order; return the number of files."""
    files = max(1, math.ceil(rows / cfg.rows_per_file))
    key = F.xxhash64(S.USER_IDX, S.ITEM_IDX, F.lit(seed + 1))
    cols = [S.USER_IDX, S.ITEM_IDX, S.LABEL] + ([S.HISTORY] if S.HISTORY in df.columns else [])
    out = (df.select(*cols).withColumn("_k", key)
           .repartitionByRange(files, "_k").sortWithinPartitions("_k").drop("_k"))
    _write_replacing(out.write.option("parquet.block.size", cfg.row_group_mb * 1024 * 1024)
                     .option("compression", "snappy"), df.sparkSession, path)
    return files


def write_histories(latest: DataFrame, path: str) -> int:
    _write_replacing(latest.write, latest.sparkSession, path)
    return latest.sparkSession.read.parquet(path).count()


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("shards", ds) as record:
        sh, store = cfg.shards, Artifacts(cfg, spark, ds)
        interactions = warehouse.read_partition(spark, cfg.table(Table.INTERACTIONS), ds)
        users = warehouse.read_partition(spark, cfg.table(Table.USER_INDEX), ds)
        items = warehouse.read_partition(spark, cfg.table(Table.ITEM_INDEX), ds)
        heldout = (warehouse.read_partition(spark, cfg.table(Table.HELDOUT), ds) if sh.split == "given" else None)
        rows = transform(interactions, users, items, sh, heldout).cache()
        n_in, n_rows = interactions.count(), rows.count()
        if n_rows != n_in:
            raise RuntimeError(f"shards: {n_in - n_rows} interactions have no index; rerun ids for ds={ds}")
        n_users, n_items = users.count(), items.count()
        stats, histories = [], {}
        for path, source, what in ((store.item_histories, rows.where(F.col(S.SPLIT) == S.TRAIN), "train items"),
                                   (store.items_before_test, rows.where(F.col(S.SPLIT) != S.TEST),
                                    "train and validation items"),
                                   (store.latest_items, rows, "items (every split)")):
            warehouse.delete_path(spark, path)
            if sh.history_length:
                histories[path] = write_histories(latest_items(source, sh.history_length, n_items, sh.seed), path)
                log.info("shards: the latest %d %s of %d users -> %s", sh.history_length, what, histories[path], path)
        for split in S.SPLITS:
            part = rows.where(F.col(S.SPLIT) == split)
            if split == S.TRAIN and sh.history_length:
                part = with_history(part, sh.history_length, n_items, sh.seed).cache()
            agg = part.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct(S.USER_IDX).alias("users"),
                           F.countDistinct(S.ITEM_IDX).alias("items"), F.avg(S.LABEL).alias("rating_mean")).first()
            path = store.split(split)
            files = write_split(part, path, agg["rows"], sh, sh.seed) if agg["rows"] else 0
            if not agg["rows"]:
                warehouse.delete_path(spark, path)
            part.unpersist()
            stats.append((split, path, int(agg["rows"]), int(agg["users"]), int(agg["items"]),
                          float(agg["rating_mean"] or 0.0), files, n_users, n_items))
            log.info("shards: %s: %d rows, %d users, %d items, %d files -> %s", split, agg["rows"], agg["users"],
                     agg["items"], files, path)
        if stats[0][2] == 0 or stats[1][2] == 0:
            raise ValueError("shards: the train or validation split is empty; add data or change shards.* fractions")
        table = spark.createDataFrame(stats, "split string, path string, rows long, users long, items long, "
                                             "rating_mean double, files int, user_index_size long, item_index_size long")
        warehouse.write_partition(table, cfg.table(Table.SHARDS), ds)
        rows.unpersist()
        record["read"] = {cfg.table(Table.INTERACTIONS): n_in}
        record["wrote"] = {s[1]: s[2] for s in stats}
        record["wrote"].update(histories)
    return record
