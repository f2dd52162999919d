"""Table I/O: every stage writes one ds partition of a catalog table, with overwrite, and reads by ds."""
from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recjob.config import JDBC_DRIVER
from recjob.schema import DS

log = logging.getLogger(__name__)

_DS_PART = re.compile(rf"(?:^|/){DS}=([^/]+)")  # a ds=<value> part of SHOW PARTITIONS' rows


class MissingInputError(RuntimeError):
    """A stage's input (table partition or file) does not exist for this run date."""


def table_exists(spark: SparkSession, table: str) -> bool:
    return spark.catalog.tableExists(table)


def _with_table(df: DataFrame, table: str, ds: str, partition_cols: tuple[str, ...] = ()) -> DataFrame:
    """``df`` with the ds column, its columns in the table's order; the table created (empty, parquet,
    partitioned by ds) when it does not exist, refused when it has other columns."""
    spark = df.sparkSession
    out = df.withColumn(DS, F.lit(ds))
    parts = [DS, *partition_cols]
    cols = [c for c in out.columns if c not in parts] + parts
    out = out.select(*cols)
    if not table_exists(spark, table):
        if "." in table:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {table.split('.')[0]}")
        out.limit(0).write.format("parquet").partitionBy(*parts).saveAsTable(table)
        return out
    existing = [f.name for f in spark.table(table).schema.fields]
    if sorted(existing) != sorted(cols):
        raise RuntimeError(
            f"table {table} has columns {existing} but this run writes {cols}; "
            f"drop the table (DROP TABLE {table}) or use another database")
    return out.select(*existing)


def write_partition(df: DataFrame, table: str, ds: str, partition_cols: tuple[str, ...] = ()) -> int:
    """Replace the ``ds`` partition of ``table`` with ``df`` (other partitions are kept); return rows written.

    The table is created on first write (parquet, partitioned by ds). Columns are matched by name. A reader of
    the same ds during the write may see it missing or partly written: tables that analysts read while a run
    goes are written with ``publish_partition``.
    """
    spark = df.sparkSession
    remove_staging_litter(spark, table, ds)
    log.info("writing %s partition ds=%s", table, ds)
    out = _with_table(df, table, ds, partition_cols)
    # Dynamic partition overwrite: only the partitions present in `out` are replaced, so readers of
    # other dates are never disturbed. An empty result would replace nothing: drop the old partition.
    if out.isEmpty():
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({DS}='{ds}')")
    else:
        out.write.mode("overwrite").insertInto(table)
    rows = spark.table(table).where(F.col(DS) == ds).count()
    log.info("wrote %s partition ds=%s: %d rows", table, ds, rows)
    return rows


VERSIONS = "_versions"  # under a table's folder: each publish of a ds in its own folder (Spark skips "_" names)


LOOKUP_ROW_GROUP_BYTES = 1 << 20  # row groups of files sorted for lookups by key: one read per lookup


def write_sorted(df: DataFrame, folder: str, keys: list[str]) -> None:
    """Parquet at ``folder`` sorted by ``keys`` (ranges of the first key across files) in small row groups, so a
    reader finds one key's rows from the row groups' min/max statistics and reads little else."""
    parts = max(1, df.sparkSession.sparkContext.defaultParallelism)
    (df.repartitionByRange(parts, keys[0]).sortWithinPartitions(*keys).write
     .option("parquet.block.size", str(LOOKUP_ROW_GROUP_BYTES)).parquet(folder))


def publish_partition(df: DataFrame, table: str, ds: str,
                      before_switch: Callable[[str], None] | None = None, sort_by: list[str] | None = None) -> int:
    """Replace the ``ds`` partition of ``table`` with ``df`` so that readers never see it missing or half written.

    The rows go to a new folder, ``<table>/_versions/ds=<ds>/<stamp>``; when it is complete, one metastore call
    points the partition at it (ADD PARTITION the first time, SET LOCATION after), so a query reads either the
    old or the new folder, whole. The folder it replaced is kept until the next publish of the ds (a query that
    began before the switch may still be reading it); older ones are removed. ``before_switch(folder)`` runs once
    the new folder is complete, before the metastore call (publish keeps its copy of the model there, so that
    no published list is ever without the model that made it). ``sort_by``: written by ``write_sorted`` (a
    page reads one user's or item's rows without scanning the table). Returns the rows published."""
    spark = df.sparkSession
    out = _with_table(df, table, ds).drop(DS)
    root = table_location(spark, table).rstrip("/")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    folder = f"{root}/{VERSIONS}/{DS}={ds}/{stamp}"
    log.info("writing %s partition ds=%s to %s", table, ds, folder)
    if sort_by:
        write_sorted(out, folder, sort_by)
    else:
        out.write.parquet(folder)
    rows = spark.read.parquet(folder).count()
    if before_switch is not None:
        before_switch(folder)
    previous = partition_location(spark, table, ds)
    if previous is None:
        spark.sql(f"ALTER TABLE {table} ADD PARTITION ({DS}='{ds}') LOCATION {sql_string(folder)}")
    else:
        spark.sql(f"ALTER TABLE {table} PARTITION ({DS}='{ds}') SET LOCATION {sql_string(folder)}")
    spark.catalog.refreshTable(table)
    log.info("published %s partition ds=%s: %d rows (was %s)", table, ds, rows, previous or "absent")
    keep = {_norm(folder), _norm(previous or "")}
    fs, versions = hadoop_fs(spark, f"{root}/{VERSIONS}/{DS}={ds}")
    for old in ([s.getPath() for s in fs.listStatus(versions)] if fs.exists(versions) else []):
        if _norm(old.toString()) not in keep:
            fs.delete(old, True)
    _, plain = hadoop_fs(spark, f"{root}/{DS}={ds}")  # the folder of a write before publishes were versioned
    if _norm(plain.toString()) not in keep and fs.exists(plain):
        fs.delete(plain, True)
    return rows


def sql_string(text: str) -> str:
    """``text`` as a Spark SQL string literal: quotes and backslashes escaped (a data_dir may hold either)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def same_location(a: str | None, b: str | None) -> bool:
    """Whether two names of a folder are the same (the metastore says file:/x where Hadoop says file:/x/)."""
    return bool(a) and bool(b) and _norm(a) == _norm(b)


def _norm(path: str) -> str:
    """A location without scheme and trailing slash: the metastore says file:/x where Hadoop says file:/x/."""
    return path.split(":", 1)[-1].lstrip("/").rstrip("/") if path else ""


def partition_location(spark: SparkSession, table: str, ds: str) -> str | None:
    """Where the metastore says the ds partition of ``table`` is (None: no such partition)."""
    if not table_exists(spark, table):
        return None
    rows = spark.sql(f"SHOW PARTITIONS {table} PARTITION ({DS}='{ds}')").collect()
    if not rows:
        return None
    info = spark.sql(f"DESCRIBE FORMATTED {table} PARTITION ({DS}='{ds}')").where(F.col("col_name") == "Location")
    found = info.collect()
    return found[0]["data_type"] if found else None


STAGING_PREFIX = ".spark-staging-"  # where a dynamic partition overwrite writes before it moves files in place


def table_location(spark: SparkSession, table: str) -> str | None:
    if not table_exists(spark, table):
        return None
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table}").where(F.col("col_name") == "Location").collect()
    return rows[0]["data_type"] if rows else None


def remove_staging_litter(spark: SparkSession, table: str, ds: str) -> list[str]:
    """Remove what a killed overwrite of this ds left in the table's folder: ``.spark-staging-*`` folders that
    hold nothing but this ds's partition (or nothing). The run holds the ds's lock, so no live writer owns them;
    another ds's staging folder may belong to a live run and is left alone. Returns what was removed."""
    location = table_location(spark, table)
    if location is None:
        return []
    fs, root = hadoop_fs(spark, location)
    if not fs.exists(root):
        return []
    removed = []
    for status in fs.listStatus(root):
        name = status.getPath().getName()
        if not (status.isDirectory() and name.startswith(STAGING_PREFIX)):
            continue
        inside = [c.getPath().getName() for c in fs.listStatus(status.getPath())]
        if all(n == f"{DS}={ds}" for n in inside):
            fs.delete(status.getPath(), True)
            removed.append(str(status.getPath()))
            log.warning("removed %s, left by a killed write of %s ds=%s", status.getPath(), table, ds)
    return removed


def partition_exists(spark: SparkSession, table: str, ds: str) -> bool:
    """True when the table exists and its ds partition holds at least one row."""
    return table_exists(spark, table) and spark.table(table).where(F.col(DS) == ds).limit(1).count() > 0


def partition_dates(spark: SparkSession, table: str) -> set[str]:
    """The ds values of the table's partitions in the metastore (none when the table does not exist)."""
    if not table_exists(spark, table):
        return set()
    out = set()
    for row in spark.sql(f"SHOW PARTITIONS {table}").collect():
        found = _DS_PART.search(row[0])
        if found:
            out.add(found.group(1))
    return out


def read_partition(spark: SparkSession, table: str, ds: str) -> DataFrame:
    """One ds partition of a table, without the ds column; a clear error if it is missing."""
    if not table_exists(spark, table):
        raise MissingInputError(f"table {table} does not exist: run the stage that writes it first")
    df = spark.table(table).where(F.col(DS) == ds)
    if not partition_exists(spark, table, ds):
        raise MissingInputError(f"table {table} has no partition ds={ds}: run the stage that writes it for {ds} first")
    return df.drop(DS)


def latest_before(spark: SparkSession, table: str, ds: str) -> str | None:
    """The newest ds partition strictly before ``ds`` (the previous run's), or None."""
    if not table_exists(spark, table):
        return None
    row = spark.table(table).where(F.col(DS) < ds).agg(F.max(DS)).first()
    return row[0] if row else None


def hadoop_fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def path_exists(spark: SparkSession, path_or_glob: str) -> bool:
    """True when a path (or a glob) matches something on its Hadoop filesystem."""
    fs, hpath = hadoop_fs(spark, path_or_glob)
    statuses = fs.globStatus(hpath)
    return statuses is not None and len(statuses) > 0


def replace_folder(spark: SparkSession, staged: str, final: str) -> None:
    """Move a fully written folder into place, replacing what was there (rename within one filesystem)."""
    fs, src = hadoop_fs(spark, staged)
    _, dst = hadoop_fs(spark, final)
    if fs.exists(dst):
        fs.delete(dst, True)
    fs.mkdirs(dst.getParent())
    if not fs.rename(src, dst):
        raise RuntimeError(f"could not move {staged} to {final}")


def copy_folder(spark: SparkSession, src: str, dst: str) -> None:
    """Copy a folder (or file) to ``dst``, replacing it, on any Hadoop filesystem (both may differ)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    sfs, spath = hadoop_fs(spark, src)
    dpath = jvm.org.apache.hadoop.fs.Path(dst)
    dfs = jvm.org.apache.hadoop.fs.FileSystem.newInstance(dpath.toUri(), conf)  # own instance: settings below
    dfs.setWriteChecksum(False)  # a copy, not Hadoop's own write: no .crc files beside the copied ones
    if dfs.exists(dpath):
        dfs.delete(dpath, True)
    dfs.mkdirs(dpath.getParent())
    try:
        if not jvm.org.apache.hadoop.fs.FileUtil.copy(sfs, spath, dfs, dpath, False, conf):
            raise RuntimeError(f"could not copy {src} to {dst}")
    finally:
        dfs.close()


def delete_path(spark: SparkSession, path: str) -> None:
    fs, hpath = hadoop_fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write (replace) a small text file through the Hadoop filesystem of ``path``."""
    fs, hpath = hadoop_fs(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def read_text(spark: SparkSession, path: str) -> str:
    """A small text file through the Hadoop filesystem of ``path``."""
    jvm = spark.sparkContext._jvm
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def jdbc_connection(spark: SparkSession, url: str, user: str, password: str, application_name: str = ""):
    """A JDBC connection opened in the driver's JVM (through py4j), for the statements Spark's JDBC source cannot
    run (advisory locks, a transaction of several statements). The caller closes it."""
    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    props.setProperty("user", user)
    props.setProperty("password", password)
    if application_name:
        props.setProperty("ApplicationName", application_name)
    jvm.java.lang.Class.forName(JDBC_DRIVER)
    return jvm.java.sql.DriverManager.getConnection(url, props)

