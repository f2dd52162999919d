"""The one place that builds the SparkSession."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recjob.config import Config
from recjob.locks import Busy

log = logging.getLogger(__name__)


class MetastoreBusy(Busy):
    """The embedded (Derby) metastore is open in another process: it admits one at a time."""

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


def _lock_holder(path: Path) -> tuple[int | None, str]:
    """The process holding a POSIX lock on ``path`` (Linux /proc/locks): (pid, command name); (None, '')."""
    try:
        inode = path.stat().st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[5].rsplit(":", 1)[-1] == str(inode):
                pid = int(fields[4])
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
                return pid, cmd.rsplit("/", 1)[-1]
    except (OSError, ValueError):
        pass
    return None, ""


def _own_jvm_pid() -> int | None:
    jvm = SparkContext._jvm
    return int(jvm.java.lang.ProcessHandle.current().pid()) if jvm is not None else None


def check_embedded_metastore(cfg: Config) -> None:
    """Refuse at once, with who holds it, when another process has the embedded metastore open: Derby would
    make this one wait minutes and then fail with a stack trace about SessionHiveMetaStoreClient."""
    import fcntl

    lock = Path(cfg.path("metastore_db")) / "dbex.lck"  # Derby holds a POSIX lock on it while booted
    if cfg.spark.metastore != "derby" or not lock.exists():
        return
    with open(lock, "a+b") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid, command = _lock_holder(lock)
            if pid is not None and pid == _own_jvm_pid():  # this process's own JVM, from an earlier session
                return
            holder = f"pid {pid}, {command}" if pid else "pid unknown"
            raise MetastoreBusy(
                f"the warehouse at {cfg.path('')} is in use by another process ({holder}); the embedded metastore "
                f"admits one process at a time: wait for it, or use an external metastore for concurrent access "
                f"(spark.metastore: external)") from None
        fcntl.lockf(fh, fcntl.LOCK_UN)


def session(cfg: Config) -> SparkSession:
    """Build (or get) the session: cfg's master unless spark-submit chose one, Hive catalog, cfg.spark.conf last."""
    if SparkContext._active_spark_context is None:  # else getOrCreate returns that session
        check_embedded_metastore(cfg)
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
