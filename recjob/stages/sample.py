"""sample: reviews -> the interactions to train on (time window, deterministic user sample, k-core)."""
from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob import readers, warehouse
from recjob import schema as S
from recjob.config import Config, SampleConfig
from recjob.stages import stage_timer

log = logging.getLogger(__name__)

_HASH_BUCKETS = 1_000_000


def _epoch(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp())


def time_window(df: DataFrame, start: str, end: str) -> DataFrame:
    """Rows with start <= unixReviewTime < end (dates, UTC)."""
    return df.where((F.col(S.TIME) >= _epoch(start)) & (F.col(S.TIME) < _epoch(end)))


def user_sample(df: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Keep a user (all their rows) when hash(reviewerID, seed) falls under ``fraction``.

    The same user is kept or dropped in every run and on every cluster (xxhash64 is fixed), and a larger
    fraction keeps a superset of the users of a smaller one.
    """
    if fraction >= 1.0:
        return df
    bucket = F.pmod(F.xxhash64(F.col(S.USER), F.lit(seed)), F.lit(_HASH_BUCKETS))
    return df.where(bucket < F.lit(int(fraction * _HASH_BUCKETS)))


def k_core(df: DataFrame, min_user: int, min_item: int, max_iterations: int = 50) -> tuple[DataFrame, int]:
    """Iteratively drop users with < min_user rows and items with < min_item rows until both hold.

    Returns the filtered frame and the number of passes. Each pass is checkpointed locally so the plan does
    not grow with the number of passes.
    """
    current = df
    before = current.count()
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
    then k-core; returns (rows, counts after each step)."""
    counts = {}
    df = reviews.select(S.USER, S.ITEM, S.RATING, S.TIME)
    if dated:
        df = time_window(df, cfg.start, cfg.end)
    counts["window"] = df.count()
    df = user_sample(df, cfg.user_fraction, cfg.seed)
    counts["user_sample"] = df.count()
    df, passes = k_core(df, cfg.min_user_reviews, cfg.min_item_reviews, cfg.max_kcore_iterations)
    counts["k_core"] = df.count()
    counts["k_core_passes"] = passes
    return df, counts


def run(cfg: Config, spark: SparkSession, ds: str) -> dict:
    with stage_timer("sample", ds) as record:
        reviews = warehouse.read_partition(spark, cfg.table("reviews"), ds)
        n_in = reviews.count()
        dated = readers.has_times(cfg.input)
        out, counts = transform(reviews, cfg.sample, dated)
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
        n = warehouse.write_partition(out, cfg.table("interactions"), ds)
        record["read"] = {cfg.table("reviews"): n_in}
        record["steps"] = counts
        record["wrote"] = {cfg.table("interactions"): n}
    return record
