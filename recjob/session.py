"""The one place that builds the SparkSession."""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recjob import warehouse
from recjob.config import Config, ConfigError
from recjob.locks import Busy

log = logging.getLogger(__name__)


class MetastoreBusy(Busy):
    """The embedded (Derby) metastore is open in another process: it admits one at a time."""

class MetastoreUnreachable(RuntimeError):
    """The configured metastore cannot be used (no JDBC driver, database down)."""


# Settings every recjob session needs, whatever the master.
BASE_CONF = {
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "hive.exec.dynamic.partition.mode": "nonstrict",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    # Adaptive execution may coalesce the partitions of a cached frame's plan as it does any other (by default
    # a cached plan keeps spark.sql.shuffle.partitions, e.g. 200 Python tasks for evaluate's 100k-user lists,
    # each loading the item matrix)
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
}


def local_conf(cfg: Config) -> dict[str, str]:
    """Conf that follows from recjob's own settings: the warehouse under data_dir; the Derby metastore pinned
    there too, or the PostgreSQL JDBC driver on the driver's classpath (read when this process starts the JVM,
    or from a properties file; under spark-submit it must be given: --driver-class-path)."""
    conf = {"spark.sql.warehouse.dir": cfg.path("warehouse")}
    if cfg.spark.metastore == "postgres" or cfg.publish.jdbc_url:
        conf["spark.driver.extraClassPath"] = cfg.spark.jdbc_jar
    if cfg.publish.jdbc_url:  # the executors write the serving copy's staging table: ship them the driver
        conf["spark.jars"] = cfg.spark.jdbc_jar
    if cfg.spark.metastore == "derby":
        db = Path(cfg.path("metastore_db"))
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={db};create=true"
        conf["spark.driver.extraJavaOptions"] = "-Dderby.system.home=" + java_option_value(str(db.parent))
    return conf


def java_option_value(value: str) -> str:
    """``value`` quoted for a Java options string, which Spark's launcher splits at spaces, honouring double quotes
    and backslash escapes inside them (a data_dir with a space, quote or backslash stays one argument)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


# How long a command waits for Derby's own lock held by a JVM without a recjob process (a JVM outlives its Python
# by a moment, longer on a busy machine; or a spark-sql started by hand) before it is refused.
LINGERING_JVM_WAIT_S = 60.0

_held: dict[str, object] = {}  # data_dir -> the open file whose flock this process holds (see hold_embedded_metastore)


def _busy(cfg: Config, holder: str) -> MetastoreBusy:
    return MetastoreBusy(
        f"the warehouse at {cfg.path('')} is in use by another process ({holder}); the embedded metastore "
        f"admits one process at a time: wait for it, or use an external metastore for concurrent access "
        f"(spark.metastore: external)")


def hold_embedded_metastore(cfg: Config, wait_s: float = LINGERING_JVM_WAIT_S) -> None:
    """Take the embedded metastore for this process before its JVM boots Derby: an flock on
    ``data_dir/metastore.owner`` (released by the kernel when the process ends, however it ends), held by
    one recjob process at a time, so two commands started together cannot both pass the check and race inside
    Derby. A live holder is refused at once (``MetastoreBusy``, with its pid and command); then Derby's own lock
    is waited for up to ``wait_s`` (the JVM of a command that has just exited)."""
    import fcntl

    if cfg.spark.metastore != "derby" or cfg.data_dir in _held:
        return
    path = Path(cfg.path("metastore.owner"))  # beside metastore_db; never removed (an flock file only)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 (kept open for the process's life: the flock lives with it)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "pid unknown"
        fh.close()
        raise _busy(cfg, holder) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}, {Path(sys.argv[0]).name or 'python'} {' '.join(sys.argv[1:3])}".strip())
    fh.flush()
    try:
        check_embedded_metastore(cfg, wait_s)
    except BaseException:
        fh.close()
        raise
    _held[cfg.data_dir] = fh


def check_embedded_metastore(cfg: Config, wait_s: float = 0.0) -> None:
    """Refuse, with who holds it, when another process has the embedded metastore open (Derby would make this one
    wait minutes and then fail with a stack trace about SessionHiveMetaStoreClient); first wait up to ``wait_s``
    for it to be released."""
    import fcntl

    lock = Path(cfg.path("metastore_db")) / "dbex.lck"  # Derby holds a POSIX lock on it while booted
    if cfg.spark.metastore != "derby":
        return
    deadline = time.monotonic() + wait_s
    while lock.exists():
        with open(lock, "a+b") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid, command = _lock_holder(lock)
                if pid is not None and pid == _own_jvm_pid():  # this process's own JVM, from an earlier session
                    return
                if time.monotonic() >= deadline:
                    raise _busy(cfg, f"pid {pid}, {command}" if pid else "pid unknown") from None
            else:
                fcntl.lockf(fh, fcntl.LOCK_UN)
                return
        log.info("the embedded metastore is still held by an exiting JVM: waiting up to %.0fs", wait_s)
        time.sleep(0.5)


def stop_jvm(timeout_s: float = 60.0) -> None:
    """Stop the session and the JVM this process started, and wait for it to exit, so that the next command on
    the same warehouse finds the embedded metastore free. (Under spark-submit the JVM is the parent: nothing to
    wait for.)"""
    gateway = SparkContext._gateway
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    proc = getattr(gateway, "proc", None)
    if gateway is None or proc is None:
        return
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 (already gone)
        pass
    if proc.stdin is not None:
        proc.stdin.close()  # pyspark's gateway JVM exits when its stdin closes
    try:
        proc.wait(timeout=timeout_s)
    except Exception:  # noqa: BLE001 (subprocess.TimeoutExpired)
        log.warning("the JVM (pid %s) did not exit within %.0fs: stopping it", proc.pid, timeout_s)
        proc.kill()
        proc.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


def spark_conf(cfg: Config) -> dict[str, str]:
    """Every Spark setting recjob applies for ``cfg`` (the SQL endpoint is started with the same)."""
    return {**BASE_CONF, **local_conf(cfg), **dict(cfg.spark.conf)}


def check_jdbc_driver(cfg: Config) -> None:
    """Under spark-submit the JVM is up before recjob can add the JDBC driver: say so plainly when it is missing
    (the Hive client would fail later with a long DataNucleus trace)."""
    jvm = SparkContext._jvm
    if (cfg.spark.metastore != "postgres" and not cfg.publish.jdbc_url) or jvm is None:
        return
    try:
        jvm.java.lang.Class.forName(warehouse.JDBC_DRIVER, True, jvm.java.lang.Thread.currentThread().getContextClassLoader())
    except Exception:  # py4j's Py4JJavaError: ClassNotFoundException
        raise MetastoreUnreachable(
            f"spark.metastore=postgres or publish.jdbc_url: the PostgreSQL JDBC driver is not on the driver's classpath; give it to "
            f"spark-submit: --driver-class-path {cfg.spark.jdbc_jar} (Debian package libpostgresql-jdbc-java)") from None


def check_py_files(submitted: SparkConf) -> None:
    """Spark puts --py-files ending in .zip, .egg or .py on the executors' path, but not .whl: every task would
    fail with "No module named 'recjob'". Refuse it before anything runs."""
    wheels = [f for f in submitted.get("spark.submit.pyFiles", "").split(",") if f.strip().endswith(".whl")]
    if wheels:
        raise ConfigError(f"--py-files {', '.join(wheels)}: Spark does not put .whl files on the executors' Python "
                          f"path; ship the same archive as a .zip (`make dist` writes dist/recjob.zip)")


def session(cfg: Config) -> SparkSession:
    """Build (or get) the session: cfg's master unless spark-submit chose one, Hive catalog, cfg.spark.conf last."""
    if SparkContext._active_spark_context is None:  # else getOrCreate returns that session
        hold_embedded_metastore(cfg)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Launched by spark-submit: connect to its JVM first, so its --master and --conf are visible.
        SparkContext._ensure_initialized()
        check_jdbc_driver(cfg)
    submitted = SparkConf()
    check_py_files(submitted)
    if not submitted.contains("spark.master"):
        builder = builder.master(cfg.spark.master)
    conf = spark_conf(cfg)
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
