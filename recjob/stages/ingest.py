"""ingest: raw review and metadata files -> typed ``reviews`` and ``items`` tables + ``quarantine``.

Reads JSON lines (``.json`` or ``.json.gz``) from a path, folder or glob on any Hadoop filesystem with an
explicit schema. Nothing is dropped silently: every row that is malformed, invalid, or superseded by a later
review of the same (reviewerID, asin) goes to the quarantine table with its reason and source file.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recjob import movielens, warehouse
from recjob import schema as S
from recjob.config import Config
from recjob.stages import stage_timer

log = logging.getLogger(__name__)

# Reasons a row is quarantined.
MALFORMED = "malformed json or wrong field type"
MISSING_USER = "missing reviewerID"
MISSING_ITEM = "missing asin"
BAD_RATING = "overall not in 1..5"
BAD_TIME = "missing or negative unixReviewTime"
DUPLICATE = "duplicate (reviewerID, asin): a later review kept"
META_MISSING_ITEM = "metadata without asin"
META_DUPLICATE = "duplicate metadata asin: first kept"


def read_json(spark: SparkSession, path: str, schema: T.StructType) -> DataFrame:
    """JSON lines with an explicit schema; unparsable lines keep their text in ``_corrupt_record``."""
    full = T.StructType(schema.fields + [T.StructField(S.CORRUPT, T.StringType())])
    return (spark.read.schema(full)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", S.CORRUPT)
            .json(path)
            .withColumn("file", F.input_file_name())
            .withColumn("_line", F.monotonically_increasing_id()))  # increases along each file


def _raw(df: DataFrame, fields: list[str]) -> F.Column:
    """The row as JSON text: the original line when it did not parse, else the parsed fields."""
    return F.coalesce(F.col(S.CORRUPT), F.to_json(F.struct(*fields)))


def transform_reviews(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split parsed review rows into (clean reviews, quarantined rows with a reason).

    Clean rows have non-null reviewerID and asin, overall in [1, 5], unixReviewTime >= 0, and one row per
    (reviewerID, asin): the latest by unixReviewTime (ties: the highest rating, the longest text, then file order).
    """
    fields = [f.name for f in S.AMAZON_REVIEW.fields]
    reason = (F.when(F.col(S.CORRUPT).isNotNull(), F.lit(MALFORMED))
              .when(F.col(S.USER).isNull() | (F.trim(S.USER) == ""), F.lit(MISSING_USER))
              .when(F.col(S.ITEM).isNull() | (F.trim(S.ITEM) == ""), F.lit(MISSING_ITEM))
              .when(F.col(S.RATING).isNull() | ~F.col(S.RATING).between(1.0, 5.0), F.lit(BAD_RATING))
              .when(F.col(S.TIME).isNull() | (F.col(S.TIME) < 0), F.lit(BAD_TIME)))
    tagged = raw.withColumn(S.REASON, reason)
    bad = tagged.where(F.col(S.REASON).isNotNull())
    good = tagged.where(F.col(S.REASON).isNull())
    order = Window.partitionBy(S.USER, S.ITEM).orderBy(
        F.col(S.TIME).desc(), F.col(S.RATING).desc(), F.length(F.coalesce("reviewText", F.lit(""))).desc(),
        F.col("file"), F.col("_line"))
    ranked = good.withColumn("_n", F.row_number().over(order))
    dups = ranked.where(F.col("_n") > 1).withColumn(S.REASON, F.lit(DUPLICATE))
    clean = ranked.where(F.col("_n") == 1).select(*S.REVIEWS_COLUMNS)
    quarantine = (bad.unionByName(dups.drop("_n"))
                  .select(F.lit("reviews").alias(S.SOURCE), S.REASON, "file", _raw(bad, fields).alias(S.RAW)))
    return clean, quarantine


def transform_metadata(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split metadata rows into (one row per asin, quarantined rows). Titles are trimmed; empty -> null."""
    fields = [f.name for f in S.AMAZON_META.fields]
    reason = (F.when(F.col(S.CORRUPT).isNotNull(), F.lit(MALFORMED))
              .when(F.col(S.ITEM).isNull() | (F.trim(S.ITEM) == ""), F.lit(META_MISSING_ITEM)))
    tagged = raw.withColumn(S.REASON, reason)
    bad = tagged.where(F.col(S.REASON).isNotNull())
    ranked = (tagged.where(F.col(S.REASON).isNull())
              .withColumn("_n", F.row_number().over(Window.partitionBy(S.ITEM).orderBy("file", "_line"))))
    dups = ranked.where(F.col("_n") > 1).withColumn(S.REASON, F.lit(META_DUPLICATE)).drop("_n")
    title = F.trim(F.col(S.TITLE))
    items = (ranked.where(F.col("_n") == 1)
             .withColumn(S.TITLE, F.when(title == "", None).otherwise(title))
             .select(*S.ITEMS_COLUMNS))
    quarantine = (bad.unionByName(dups)
                  .select(F.lit("metadata").alias(S.SOURCE), S.REASON, "file", _raw(bad, fields).alias(S.RAW)))
    return items, quarantine


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("ingest", ds) as report:
        reviews_path = cfg.path(cfg.input.reviews)
        if not warehouse.path_exists(spark, reviews_path):
            raise warehouse.MissingInputError(f"ingest: no review files at {reviews_path} (input.reviews)")
        test_path = cfg.path(cfg.input.test) if cfg.input.test else None
        if test_path and not warehouse.path_exists(spark, test_path):
            raise warehouse.MissingInputError(f"ingest: no held-out test files at {test_path} (input.test)")
        heldout = None
        if cfg.input.format == "movielens":
            reviews, items, quarantine = movielens.read(spark, reviews_path, cfg.path(cfg.input.metadata)
                                                        if cfg.input.metadata else None)
            if test_path:
                heldout, _, test_q = movielens.read(spark, test_path, None)
                reviews, quarantine = reviews.unionByName(heldout), quarantine.unionByName(test_q)
        else:
            raw = read_json(spark, reviews_path, S.AMAZON_REVIEW)
            if test_path:
                raw_test = read_json(spark, test_path, S.AMAZON_REVIEW)
                raw = raw.unionByName(raw_test)
                heldout = transform_reviews(raw_test)[0]
            reviews, quarantine = transform_reviews(raw.cache())
            items = None
            if cfg.input.metadata:
                meta_path = cfg.path(cfg.input.metadata)
                if warehouse.path_exists(spark, meta_path):
                    items, meta_q = transform_metadata(read_json(spark, meta_path, S.AMAZON_META))
                    quarantine = quarantine.unionByName(meta_q)
                else:
                    log.warning("ingest: no metadata at %s: titles will be empty", meta_path)
            report["read"] = {"reviews": reviews_path, "metadata": cfg.input.metadata and cfg.path(cfg.input.metadata)}
        if items is None:  # keep the table complete: one row per reviewed item, no title
            items = (reviews.select(S.ITEM).distinct()
                     .select(S.ITEM, *[F.lit(None).cast(t).alias(c) for c, t in
                                       [(S.TITLE, "string"), ("brand", "string"), ("main_cat", "string"),
                                        ("category", "array<string>"), ("price", "string")]]))
        n_reviews = warehouse.write_partition(reviews, cfg.table("reviews"), ds)
        n_items = warehouse.write_partition(items, cfg.table("items"), ds)
        n_bad = warehouse.write_partition(quarantine, cfg.table("quarantine"), ds)
        if heldout is not None:  # the given test split (e.g. ml-100k u1.test), used by shards.split=given
            report["heldout"] = warehouse.write_partition(heldout.select(S.USER, S.ITEM).distinct(),
                                                          cfg.table("heldout"), ds)
        if n_bad:
            by_reason = (spark.table(cfg.table("quarantine")).where(F.col(S.DS) == ds)
                         .groupBy(S.SOURCE, S.REASON).count().orderBy(S.SOURCE, S.REASON).collect())
            for row in by_reason:
                log.warning("ingest: quarantined %d %s rows: %s", row["count"], row[S.SOURCE], row[S.REASON])
        if n_reviews == 0:
            raise ValueError(f"ingest: no valid review in {reviews_path} ({n_bad} rows quarantined, "
                             f"see table {cfg.table('quarantine')} ds={ds})")
        report["wrote"] = {cfg.table("reviews"): n_reviews, cfg.table("items"): n_items,
                           cfg.table("quarantine"): n_bad}
    return report
