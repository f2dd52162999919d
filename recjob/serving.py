"""The serving copy of the published lists: a PostgreSQL table that applications read without Spark.

Spark's JDBC writer commits each task on its own, so it loads a staging table; one transaction of the driver's
JDBC connection then deletes the ds's rows of the serving table and inserts the staged ones. PostgreSQL readers
see the old lists or the new ones (MVCC), never a mix. The table is indexed on (ds, "reviewerID").
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from recjob import warehouse
from recjob import schema as S
from recjob.config import PublishConfig

log = logging.getLogger(__name__)

COLUMNS = {S.DS: "text NOT NULL", S.USER: "text NOT NULL", S.RANK: "integer NOT NULL", S.ITEM: "text NOT NULL",
           S.TITLE: "text", S.SCORE: "real"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def export(recs: DataFrame, cfg: PublishConfig, ds: str) -> int:
    """Replace the ds's rows of ``cfg.jdbc_table`` with ``recs`` (columns of publish.COLUMNS); rows written."""
    spark = recs.sparkSession
    table, staging = cfg.jdbc_table, f"{cfg.jdbc_table}_load_{ds.replace('-', '')}"
    props = {"user": cfg.jdbc_user, "password": cfg.jdbc_password, "driver": warehouse.JDBC_DRIVER}
    log.info("writing the serving copy %s ds=%s (staging %s)", table, ds, staging)
    recs.select(*[c for c in COLUMNS if c != S.DS]).write.jdbc(cfg.jdbc_url, staging, mode="overwrite",
                                                                  properties=props)
    conn = warehouse.jdbc_connection(spark, cfg.jdbc_url, cfg.jdbc_user, cfg.jdbc_password)
    try:
        ddl = conn.createStatement()
        ddl.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ("
                    + ", ".join(f"{_q(c)} {t}" for c, t in COLUMNS.items()) + ")")
        ddl.execute(f"CREATE INDEX IF NOT EXISTS {_q(table + '_ds_user')} ON {_q(table)} ({_q(S.DS)}, {_q(S.USER)})")
        conn.setAutoCommit(False)
        delete = conn.prepareStatement(f"DELETE FROM {_q(table)} WHERE {_q(S.DS)} = ?")
        delete.setString(1, ds)
        delete.executeUpdate()
        cols = [c for c in COLUMNS if c != S.DS]
        insert = conn.prepareStatement(f"INSERT INTO {_q(table)} ({_q(S.DS)}, {', '.join(map(_q, cols))}) "
                                       f"SELECT ?, {', '.join(map(_q, cols))} FROM {_q(staging)}")
        insert.setString(1, ds)
        rows = insert.executeUpdate()
        conn.commit()
        conn.setAutoCommit(True)
        ddl.execute(f"DROP TABLE IF EXISTS {_q(staging)}")
    except Exception:
        if not conn.getAutoCommit():
            conn.rollback()
        raise
    finally:
        conn.close()
    log.info("serving copy %s ds=%s: %d rows, replaced in one transaction", table, ds, rows)
    return rows
