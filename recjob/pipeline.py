"""Runs the stages in order for one run date."""
from __future__ import annotations

import importlib
import logging
import time

from pyspark.sql import SparkSession

from recjob import progress
from recjob.config import Config
from recjob.names import STAGES as ORDER

log = logging.getLogger(__name__)


def stage_module(name: str):
    if name not in ORDER:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(ORDER)}")
    return importlib.import_module(f"recjob.stages.{name}")


def run_stage(name: str, cfg: Config, spark: SparkSession, ds: str) -> dict:
    """Run one stage; while it runs, the progress of its Spark work is logged every 30 s (recjob.progress)."""
    with progress.spark_progress(spark, f"{name} ds={ds}"):
        return stage_module(name).run(cfg, spark, ds)


def run(cfg: Config, spark: SparkSession, ds: str, first: str = ORDER[0], last: str = ORDER[-1]) -> list[dict]:
    """Run stages ``first``..``last`` (inclusive) for ``ds``; return their records."""
    stages = ORDER[ORDER.index(first): ORDER.index(last) + 1]
    if not stages:
        raise ValueError(f"--from {first} comes after --to {last}")
    t0 = time.monotonic()
    records = [run_stage(name, cfg, spark, ds) for name in stages]
    log.info("pipeline ds=%s: %s done in %.1fs (%s)", ds, "..".join((stages[0], stages[-1])), time.monotonic() - t0,
             ", ".join(f"{r['stage']} {r['seconds']}s" for r in records))
    return records
