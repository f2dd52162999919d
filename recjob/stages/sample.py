"""sample: reviews -> the interactions to train on (time window, deterministic user sample, k-core)."""
from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import readers, warehouse
from recjob import schema as S
from recjob.config import Config, SampleConfig
from recjob import reviews as known_reviews
from recjob.progress import stage_timer
from recjob.names import Table

log = logging.getLogger(__name__)

_HASH_BUCKETS = 1_000_000


def _epoch(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp())


def in_window(start: str, end: str) -> Column:
    """start <= unixReviewTime < end (dates, UTC)."""
    return (F.col(S.TIME) >= _epoch(start)) & (F.col(S.TIME) < _epoch(end))


def time_window(df: DataFrame, start: str, end: str) -> DataFrame:
    """Rows with start <= unixReviewTime < end (dates, UTC)."""
    return df.where(in_window(start, end))


def in_user_sample(fraction: float, seed: int) -> Column:
    """Whether hash(reviewerID, seed) falls under ``fraction`` (always true from 1 on)."""
    if fraction >= 1.0:
        return F.lit(True)
    bucket = F.pmod(F.xxhash64(F.col(S.USER), F.lit(seed)), F.lit(_HASH_BUCKETS))
    return bucket < F.lit(int(fraction * _HASH_BUCKETS))


def user_sample(df: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Keep a user (all their rows) when hash(reviewerID, seed) falls under ``fraction``.

    The same user is kept or dropped in every run and on every cluster (xxhash64 is fixed), and a larger
    fraction keeps a superset of the users of a smaller one.
    """
    return df.where(in_user_sample(fraction, seed))  # from 1 on a filter of true, which Spark drops from the plan


def k_core(df: DataFrame, min_user: int, min_item: int, max_iterations: int = 50,
           rows: int | None = None) -> tuple[DataFrame, int]:
    """Iteratively drop users with < min_user rows and items with < min_item rows until both hold.

    Returns the filtered frame and the number of passes. Each pass is checkpointed locally so the plan does
    not grow with the number of passes. ``rows``: the rows of ``df`` when known (not counted again).
    """
    current = df
    before = current.count() if rows is None else rows
    for it in range(1, max_iterations + 1):
        users = current.groupBy(S.USER).count().where(F.col("count") >= min_user).select(S.USER)
        items = current.groupBy(S.ITEM).count().where(F.col("count") >= min_item).select(S.ITEM)
        nxt = current.join(users, S.USER, "left_semi").join(items, S.ITEM, "left_semi").localCheckpoint()
        after = nxt.count()
        log.info("sample: k-core pass %d: %d -> %d rows", it, before, after)
        current = nxt
        if after == before:
            return current, it
        before = after
    raise RuntimeError(f"k-core did not converge in {max_iterations} passes "
                       f"(raise sample.max_kcore_iterations)")


def transform(reviews: DataFrame, cfg: SampleConfig, dated: bool = True) -> tuple[DataFrame, dict]:
    """Window (only when the input is ``dated``: without times there are no dates to window), then user sample,
    then k-core; returns (rows, counts: read and after each step)."""
    df = reviews.select(S.USER, S.ITEM, S.RATING, S.TIME)
    window = in_window(cfg.start, cfg.end) if dated else F.lit(True)
    # the rows read and kept by each step counted in one scan of the reviews
    c = df.agg(F.count(F.lit(1)).alias("read"), F.count(F.when(window, 1)).alias("window"),
               F.count(F.when(window & in_user_sample(cfg.user_fraction, cfg.seed), 1)).alias("user_sample")).first()
    counts = {"read": c["read"], "window": c["window"], "user_sample": c["user_sample"]}
    df = user_sample(time_window(df, cfg.start, cfg.end) if dated else df, cfg.user_fraction, cfg.seed)
    df, passes = k_core(df, cfg.min_user_reviews, cfg.min_item_reviews, cfg.max_kcore_iterations,
                        rows=counts["user_sample"])
    counts["k_core"] = df.count()
    counts["k_core_passes"] = passes
    return df, counts


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("sample", ds) as record:
        reviews = known_reviews.known(cfg, spark, ds)
        dated = readers.has_times(cfg.input)
        out, counts = transform(reviews, cfg.sample, dated)
        n_in = counts.pop("read")
        s = cfg.sample
        window = f"window [{s.start}, {s.end})" if dated else f"no window (input.format={cfg.input.format} has no times)"
        log.info("sample: %d reviews; %s: %d; user sample %.3f: %d; %d/%d-core: %d rows",
                 n_in, window, counts["window"], s.user_fraction, counts["user_sample"],
                 s.min_user_reviews, s.min_item_reviews, counts["k_core"])
        if counts["k_core"] == 0:
            raise ValueError(
                f"sample: nothing left after the time window [{s.start}, {s.end}) ({counts['window']} rows), "
                f"user sample and {s.min_user_reviews}/{s.min_item_reviews}-core ({n_in} reviews read): "
                f"widen sample.start/sample.end or lower sample.min_user_reviews/min_item_reviews")
        n = warehouse.write_partition(out, cfg.table(Table.INTERACTIONS), ds)
        periods = known_reviews.periods(cfg, spark, ds)
        if cfg.input.incremental:
            log.info("sample: the reviews of %d periods (ds %s .. %s), the latest of each (user, item)",
                     len(periods), periods[0], periods[-1])
        record["read"] = {cfg.table(Table.REVIEWS): n_in, "periods": len(periods)}
        record["steps"] = counts
        record["wrote"] = {cfg.table(Table.INTERACTIONS): n}
    return record
