"""The one place that builds the SparkSession."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recjob.config import Config

log = logging.getLogger(__name__)

# Settings every recjob session needs, whatever the master.
BASE_CONF = {
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "hive.exec.dynamic.partition.mode": "nonstrict",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


def local_conf(cfg: Config) -> dict[str, str]:
    """Conf for the embedded default: warehouse and Derby metastore pinned under data_dir."""
    conf = {"spark.sql.warehouse.dir": cfg.path("warehouse")}
    if cfg.spark.metastore == "derby":
        db = Path(cfg.path("metastore_db"))
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={db};create=true"
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={db.parent}"
    return conf


def session(cfg: Config) -> SparkSession:
    """Build (or get) the session: cfg's master unless spark-submit chose one, Hive catalog, cfg.spark.conf last."""
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Launched by spark-submit: connect to its JVM first, so its --master and --conf are visible.
        SparkContext._ensure_initialized()
    submitted = SparkConf()
    if not submitted.contains("spark.master"):
        builder = builder.master(cfg.spark.master)
    conf = {**BASE_CONF, **local_conf(cfg), **dict(cfg.spark.conf)}
    if "PYSPARK_PYTHON" not in os.environ and not submitted.contains("spark.pyspark.python"):
        # Python workers must run this interpreter (it has pyarrow, numpy), not whatever python3 is on
        # PATH. pyspark reads only the environment variable here (spark-submit sets it from the conf).
        os.environ["PYSPARK_PYTHON"] = sys.executable
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s master=%s warehouse=%s", spark.version, spark.sparkContext.master,
             spark.conf.get("spark.sql.warehouse.dir"))
    return spark
