"""Settings that come from the environment, never from a file: secrets in ``spark.conf`` and the metastore's
connection."""
from __future__ import annotations

import re
from typing import Mapping

from recjob.config.settings import ConfigError


# Spark settings that hold secrets (the same words Spark redacts in its UI and logs): their values come from the
# environment, written ${VAR}, never from a committed file or a command line that a scheduler logs.
SECRET_KEY = re.compile(r"(?i)secret|password|token|credential|access[._-]?key")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


METASTORES = ("derby", "postgres", "external")

JDBC_DRIVER = "org.postgresql.Driver"  # PostgreSQL's JDBC driver: the metastore, its lock, the serving copy

# spark.metastore=postgres: Spark's built-in Hive metastore client on PostgreSQL. The connection comes from the
# environment (an Airflow connection's fields, or `deploy/services.sh env` for the local one), never from a file;
# the schema is created on first use. Keys set in spark.conf win.
METASTORE_CONF = {
    "postgres": {
        "spark.hadoop.javax.jdo.option.ConnectionURL": "${RECJOB_METASTORE_URL}",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": "${RECJOB_METASTORE_USER}",
        "spark.hadoop.javax.jdo.option.ConnectionPassword": "${RECJOB_METASTORE_PASSWORD}",
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": JDBC_DRIVER,
        # The schema is created on first use, table by table. Not its foreign keys: adding one while another
        # connection of the same client holds a transaction on the referenced table deadlocks on PostgreSQL
        # (ALTER TABLE "TBL_PRIVS" ADD CONSTRAINT ... waits on an INSERT INTO "PARTITION_KEYS" forever).
        "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
        "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
        "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
        "spark.hadoop.hive.metastore.schema.verification": "false",
    },
}


def _resolve_secrets(conf: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, value in conf.items():
        ref = ENV_REF.fullmatch(value)
        if SECRET_KEY.search(key) and not ref:
            raise ConfigError(f"spark.conf.{key} holds a secret: give it as ${{VAR}} and set VAR in the environment "
                              f"(or the Airflow connection's environment), not its value")
        if ref:
            if ref.group(1) not in environ:
                raise ConfigError(f"spark.conf.{key} refers to ${{{ref.group(1)}}}, which is not set in the environment")
            value = environ[ref.group(1)]
        out[key] = value
    return out

