"""The serving copy of the published tables: PostgreSQL tables that applications read without Spark.

Spark's JDBC writer commits each task on its own, so each table loads a staging table; one transaction of the
driver's JDBC connection then deletes the ds's rows of every serving table and inserts the staged ones.
PostgreSQL readers see the old lists and similar items or the new ones (MVCC), never a mix. The lists are
indexed on (ds, "reviewerID"), the similar items on (ds, asin).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame

from recjob import warehouse
from recjob import schema as S
from recjob.config import PublishConfig

log = logging.getLogger(__name__)

RECOMMENDATIONS = {S.DS: "text NOT NULL", S.USER: "text NOT NULL", S.RANK: "integer NOT NULL",
                   S.ITEM: "text NOT NULL", S.TITLE: "text", S.SCORE: "real"}
ITEM_NEIGHBOURS = {S.DS: "text NOT NULL", S.ITEM: "text NOT NULL", S.RANK: "integer NOT NULL",
                   "neighbour": "text NOT NULL", S.TITLE: "text", S.SCORE: "real", "method": "text"}


@dataclass(frozen=True)
class Copy:
    """One published table's serving copy: its rows (the columns but ds), table, columns and lookup key."""

    rows: DataFrame
    table: str
    columns: dict
    key: str


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copies(cfg: PublishConfig, recs: DataFrame, similar: DataFrame | None) -> list[Copy]:
    """The serving copies of a publish: the lists, and the similar items when they were published."""
    out = [Copy(recs, cfg.jdbc_table, RECOMMENDATIONS, S.USER)]
    if similar is not None:
        out.append(Copy(similar, cfg.jdbc_neighbours_table, ITEM_NEIGHBOURS, S.ITEM))
    return out


def export(parts: list[Copy], cfg: PublishConfig, ds: str) -> dict[str, int]:
    """Replace the ds's rows of each copy's table with its rows, all in one transaction; {table: rows}."""
    spark = parts[0].rows.sparkSession
    props = {"user": cfg.jdbc_user, "password": cfg.jdbc_password, "driver": warehouse.JDBC_DRIVER}
    staged = []
    for part in parts:
        staging = f"{part.table}_load_{ds.replace('-', '')}"
        log.info("writing the serving copy %s ds=%s (staging %s)", part.table, ds, staging)
        part.rows.select(*[c for c in part.columns if c != S.DS]).write.jdbc(cfg.jdbc_url, staging,
                                                                              mode="overwrite", properties=props)
        staged.append((part, staging))
    conn = warehouse.jdbc_connection(spark, cfg.jdbc_url, cfg.jdbc_user, cfg.jdbc_password)
    rows = {}
    try:
        ddl = conn.createStatement()
        for part, _ in staged:
            ddl.execute(f"CREATE TABLE IF NOT EXISTS {_q(part.table)} ("
                        + ", ".join(f"{_q(c)} {t}" for c, t in part.columns.items()) + ")")
            index = f"{part.table}_ds_{'user' if part.key == S.USER else 'item'}"
            ddl.execute(f"CREATE INDEX IF NOT EXISTS {_q(index)} ON {_q(part.table)} ({_q(S.DS)}, {_q(part.key)})")
        conn.setAutoCommit(False)
        for part, staging in staged:
            delete = conn.prepareStatement(f"DELETE FROM {_q(part.table)} WHERE {_q(S.DS)} = ?")
            delete.setString(1, ds)
            delete.executeUpdate()
            cols = [c for c in part.columns if c != S.DS]
            insert = conn.prepareStatement(f"INSERT INTO {_q(part.table)} ({_q(S.DS)}, {', '.join(map(_q, cols))}) "
                                           f"SELECT ?, {', '.join(map(_q, cols))} FROM {_q(staging)}")
            insert.setString(1, ds)
            rows[part.table] = insert.executeUpdate()
        conn.commit()
        conn.setAutoCommit(True)
        for _, staging in staged:
            ddl.execute(f"DROP TABLE IF EXISTS {_q(staging)}")
    except Exception:
        if not conn.getAutoCommit():
            conn.rollback()
        raise
    finally:
        conn.close()
    log.info("serving copy ds=%s: %s, replaced in one transaction", ds,
             ", ".join(f"{t} {n} rows" for t, n in rows.items()))
    return rows
