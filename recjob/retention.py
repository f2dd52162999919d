"""Retention: every table and folder keeps the newest run dates it is configured for; publish expires the rest.

A daily schedule would otherwise keep a full copy of every working table per ds. The working tables and
folders keep ``retention.working`` ds; what analysts and the pages read (the published tables, ``evaluation``,
the published model copies, the pages' files) keeps ``retention.published`` ds. Always kept: the ds just run,
and, among the published, the champion (the newest published ds before it, whose model copy the next run is
compared with). A ds that another live run holds (its lock file) is
skipped and expired by a later publish.

Each partition goes whole: first the metastore (readers stop seeing it), then its files. A killed expiry leaves
at most folders that no partition names; the next expiry removes those too (they are found by listing the
table's folder), so what remains is always a set of complete partitions.
"""
from __future__ import annotations

import logging
import re

from pyspark.sql import SparkSession

from recjob import artifacts, locks, warehouse
from recjob.config import Config
from recjob.names import DS, PUBLISHED_TABLES, Table
from recjob.web import files

log = logging.getLogger(__name__)

WORKING_TABLES = (Table.REVIEWS, Table.ITEMS, Table.QUARANTINE, Table.HELDOUT, Table.INTERACTIONS,
                  Table.USER_INDEX, Table.ITEM_INDEX, Table.SHARDS, Table.USER_FACTORS, Table.ITEM_FACTORS,
                  Table.TRAINING_RUNS, Table.SCORES, Table.NEIGHBOURS)
KEPT_AS_PUBLISHED = (*PUBLISHED_TABLES, Table.EVALUATION)
# folders under data_dir holding one ds=<ds> folder per run date
WORKING_FOLDERS = ("shards", "models", "reports", "checkpoints", "rejected")
PUBLISHED_FOLDERS = (artifacts.PUBLISHED, files.WEB)


def working_tables(cfg: Config) -> tuple[str, ...]:
    """The working tables under ``retention.working``; with ``input.incremental`` the ``reviews`` partitions are
    each one period's input, ingested once and kept (every later run reads them), so they never expire."""
    return tuple(t for t in WORKING_TABLES if not (cfg.input.incremental and t == Table.REVIEWS))

_DS_NAME = re.compile(rf"^{DS}=(\d{{4}}-\d{{2}}-\d{{2}})(\.pending|\.staging)?$")


def champion_ds(cfg: Config, spark: SparkSession, ds: str) -> str | None:
    """The champion of a run for ``ds``: the newest earlier ds whose model was published (its lists in
    ``recommendations`` and its model's copy kept), which evaluate compares the run's model with."""
    copies = {d for d, found in _folders(spark, cfg.path(artifacts.PUBLISHED)).items()
              if any(f.rstrip("/").endswith(f"{DS}={d}") for f in found)}  # not a .pending or .staging one alone
    shown = warehouse.partition_dates(spark, cfg.table(Table.RECOMMENDATIONS)) & copies
    return max((d for d in shown if d < ds), default=None)


def _folders(spark: SparkSession, parent: str) -> dict[str, list[str]]:
    """{ds: [its folders]} of the ``ds=<ds>`` folders (and their .pending / .staging siblings) in ``parent``."""
    fs, root = warehouse.hadoop_fs(spark, parent)
    if not fs.exists(root):
        return {}
    out: dict[str, list[str]] = {}
    for status in fs.listStatus(root):
        found = _DS_NAME.match(status.getPath().getName())
        if found and status.isDirectory():
            out.setdefault(found.group(1), []).append(status.getPath().toString())
    return out


def _table_folders(spark: SparkSession, table: str) -> dict[str, list[str]]:
    """{ds: folders} of a table's own folder: plain ``ds=`` partitions and publish's ``_versions/ds=``."""
    root = warehouse.table_location(spark, table)
    if root is None:
        return {}
    out = _folders(spark, root)
    for ds, found in _folders(spark, f"{root.rstrip('/')}/{warehouse.VERSIONS}").items():
        out.setdefault(ds, []).extend(found)
    return out


def plan(spark: SparkSession, cfg: Config, ds: str) -> dict[str, set[str]]:
    """{"working": ds to expire, "published": ds to expire} under cfg.retention, ``ds`` being the run just
    published. What goes is older than the newest ones kept (a newer ds may be a run that has not published
    yet), and is neither ``ds`` nor its champion."""
    r = cfg.retention
    published = set().union(*(warehouse.partition_dates(spark, cfg.table(t)) for t in KEPT_AS_PUBLISHED))
    published |= set(_folders(spark, cfg.path(artifacts.PUBLISHED))) | set(_folders(spark, cfg.path(files.WEB)))
    champion = champion_ds(cfg, spark, ds)
    always = {"working": {ds}, "published": {ds} | ({champion} if champion else set())}
    working = set().union(*(warehouse.partition_dates(spark, cfg.table(t)) for t in working_tables(cfg)))
    working |= set().union(*(_folders(spark, cfg.path(f)) for f in WORKING_FOLDERS))
    out = {}
    for name, dates, newest in (("working", working, r.working), ("published", published, r.published)):
        if newest == 0:
            out[name] = set()
            continue
        kept = sorted(dates | {ds})[-newest:]
        out[name] = {d for d in dates if d < kept[0] and d not in always[name]}
    return out


def _drop_table_ds(spark: SparkSession, table: str, ds: str, folders: list[str]) -> bool:
    """Drop one ds of a table: the metastore's partition first, then every folder of it. True if anything went."""
    had = ds in warehouse.partition_dates(spark, table)
    if had:
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({DS}={warehouse.sql_string(ds)})")
    for folder in folders:
        warehouse.delete_path(spark, folder)
    if had or folders:
        spark.catalog.refreshTable(table)
    return had or bool(folders)


def expire(cfg: Config, spark: SparkSession, ds: str) -> dict[str, list[str]]:
    """Remove what cfg.retention no longer keeps, after ``ds`` was published; return {ds: what was removed}."""
    todo = plan(spark, cfg, ds)
    if not any(todo.values()):
        return {}
    groups = (("working", working_tables(cfg), WORKING_FOLDERS), ("published", KEPT_AS_PUBLISHED, PUBLISHED_FOLDERS))
    removed: dict[str, list[str]] = {}
    for old in sorted(set().union(*todo.values())):
        try:
            with locks.ds_lock(spark, cfg.path("locks"), old, "retention (expiring this ds)"):
                for name, tables, folders in groups:
                    if old not in todo[name]:
                        continue
                    for table in tables:
                        full = cfg.table(table)
                        if _drop_table_ds(spark, full, old, _table_folders(spark, full).get(old, [])):
                            removed.setdefault(old, []).append(full)
                    if name == "published":
                        files.remove_index_entry(cfg.path(""), old)  # the pages stop offering it first
                    for folder in folders:
                        parent = cfg.path(folder)
                        for path in _folders(spark, parent).get(old, []):
                            warehouse.delete_path(spark, path)
                            removed.setdefault(old, []).append(path)
        except locks.Busy as exc:
            log.warning("retention: ds=%s is held by a live run, expired by a later publish (%s)", old, exc)
            continue
        log.info("retention: removed ds=%s from %s", old, ", ".join(removed.get(old, [])) or "nothing")
    return removed
