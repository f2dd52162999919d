"""Production shape on one machine (deploy/services.sh): a private PostgreSQL holding the Hive metastore, a Spark
standalone master with two one-core workers whose Python has no recjob (it comes with --py-files), and the
Spark Thrift Server over the same metastore.

One run of the whole pipeline is submitted to the cluster (spark-submit jobs/run.py), then the Airflow DAG reruns
the same ds with top_n 5 instead of 10, every task a spark-submit to the cluster. Meanwhile an analyst's beeline
queries ``recjob.recommendations`` by name, again and again: with the embedded metastore that query and the run
would lock each other out; here every read must succeed and return one complete published version (ten or five
lists per user, all users), never a missing or half-written partition.

Needs the PostgreSQL server and its JDBC driver (Debian: postgresql, libpostgresql-jdbc-java; .ci/run installs
them); skipped with a message without them, unless RECJOB_REQUIRE_SERVICES=1 (CI), where that fails instead.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_capped, small_run_conf

pytestmark = pytest.mark.slow  # about eight minutes: services, one pipeline and one DAG run on the cluster

BIN = Path(sys.executable).parent
SERVICES = ROOT / "deploy" / "services.sh"
JDBC_JAR = os.environ.get("RECJOB_JDBC_JAR", "/usr/share/java/postgresql.jar")
BEELINE = Path(__import__("pyspark").__file__).parent / "bin" / "beeline"  # shipped in pip's pyspark
PROMPT = re.compile(r"^\d+: jdbc:hive2://[^>]*> ")
DS = "2026-01-04"
_OFFSET = int(os.environ.get("RECJOB_TEST_PORT_OFFSET", "0"))  # two runs of this test side by side
PORTS = {key: str(port + _OFFSET) for key, port in {"RECJOB_PG_PORT": 55442, "RECJOB_SPARK_MASTER_PORT": 7087,
                                                    "RECJOB_SPARK_MASTER_UI_PORT": 18090, "RECJOB_THRIFT_PORT": 10011}.items()}


def _missing() -> str | None:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return "no PostgreSQL server (Debian package postgresql)"
    if not Path(JDBC_JAR).exists():
        return f"no PostgreSQL JDBC driver at {JDBC_JAR} (Debian package libpostgresql-jdbc-java)"
    if shutil.which("spark-submit", path=str(BIN)) is None:
        return f"spark-submit not found in {BIN}"
    if importlib.util.find_spec("airflow") is None or importlib.util.find_spec("airflow.providers.apache.spark") is None:
        return "Airflow and its Spark provider are not installed"
    return None


@pytest.fixture(scope="module")
def deployment():
    missing = _missing()
    if missing:
        if os.environ.get("RECJOB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"RECJOB_REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(f"production-shape test skipped: {missing}")
    # Under /tmp with mode 755: as root the PostgreSQL server runs as the postgres user, which must reach it.
    home = Path(tempfile.mkdtemp(prefix="recjob-prod-"))
    home.chmod(0o755)
    data = home / "data"
    conf = home / "recjob.yaml"
    small_run_conf(conf, data,
                   spark={"master": f"spark://127.0.0.1:{PORTS['RECJOB_SPARK_MASTER_PORT']}", "metastore": "postgres",
                          "jdbc_jar": JDBC_JAR,
                          "conf": {"spark.executor.memory": "1g", "spark.executor.cores": "1", "spark.cores.max": "2",
                                   "spark.sql.shuffle.partitions": "4"}},
                   evaluate={"als_iterations": 3}, score={"top_n": 10},
                   publish={"jdbc_url": f"jdbc:postgresql://127.0.0.1:{PORTS['RECJOB_PG_PORT']}/serving"})

    env = dict(os.environ)
    env.update(PORTS)
    env.update({"RECJOB_SERVICES_DIR": str(home / "services"), "RECJOB_DATA_DIR": str(data),
                "RECJOB_CONF": str(conf), "RECJOB_PYTHON": sys.executable, "RECJOB_JDBC_JAR": JDBC_JAR,
                "PATH": f"{BIN}:{env.get('PATH', '')}"})
    started = run_capped([str(SERVICES), "start"], env=env, capture_output=True, text=True, cap_s=1800)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        exports = subprocess.run([str(SERVICES), "env"], env=env, capture_output=True, text=True, check=True)
        client = subprocess.run(["bash", "-c", exports.stdout + "\nenv"], env=env, capture_output=True, text=True,
                                check=True).stdout
        env.update(dict(line.split("=", 1) for line in client.splitlines() if line.startswith("RECJOB_")))
        env.update({"RECJOB_SERVING_USER": env["RECJOB_METASTORE_USER"],  # the serving copy: same server here
                    "RECJOB_SERVING_PASSWORD": env["RECJOB_METASTORE_PASSWORD"]})
        dist = home / "dist"
        run_capped([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
                       check=True, capture_output=True, cap_s=900)
        shutil.copy(next(dist.glob("recjob-*.whl")), dist / "recjob.zip")
        yield {"env": env, "home": home, "conf": str(conf), "data": data, "zip": str(dist / "recjob.zip")}
    finally:
        stopped = run_capped([str(SERVICES), "stop"], env=env, capture_output=True, text=True, cap_s=900)
        print(stopped.stdout, stopped.stderr)
        shutil.rmtree(home, ignore_errors=True)


def beeline(d, query: str, timeout: float = 120) -> list[list[str]]:
    """Rows of a query through the SQL endpoint (the Thrift Server), as an analyst runs it."""
    out = subprocess.run([str(BEELINE), "-u", d["env"]["RECJOB_SQL_URL"], "--silent=true", "--showHeader=false",
                          "--outputformat=tsv2", "-e", query],
                         env=d["env"], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"beeline failed ({out.returncode}): {out.stderr[-1500:]}")
    lines = (PROMPT.sub("", line) for line in out.stdout.splitlines())  # beeline echoes its prompt without a tty
    return [line.split("\t") for line in lines if line.strip()]


VERSION = f"SELECT count(*), count(DISTINCT reviewerID), max(rank) FROM recjob.recommendations WHERE ds = '{DS}'"
SERVED = f"""SELECT count(*), count(DISTINCT "reviewerID"), max(rank) FROM recommendations WHERE ds = '{DS}'"""


def psql(d, database: str, query: str) -> list[list[str]]:
    env = d["env"]
    out = run_capped(["psql", "-h", "127.0.0.1", "-p", PORTS["RECJOB_PG_PORT"], "-U", env["RECJOB_METASTORE_USER"],
                          "-d", database, "-tA", "-F", "\t", "-c", query],
                         env={**env, "PGPASSWORD": env["RECJOB_METASTORE_PASSWORD"]}, capture_output=True, text=True,
                         cap_s=180)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr[-500:]}")
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


def test_pipeline_and_dag_on_the_cluster_while_an_analyst_queries(deployment):
    d = deployment
    env = d["env"]
    run_capped([str(BIN / "recjob"), "generate", "--conf", d["conf"], "--reviews", "20000"], env=env,
                   check=True, capture_output=True, cap_s=900)
    submit = run_capped(
        [str(BIN / "spark-submit"), "--master", env["RECJOB_SPARK_MASTER"], "--driver-class-path", JDBC_JAR,
         "--py-files", d["zip"], "--conf", f"spark.pyspark.python={env['RECJOB_EXECUTOR_PYTHON']}",
         "--conf", f"spark.pyspark.driver.python={sys.executable}",
         str(ROOT / "jobs" / "run.py"), "--ds", DS, "--conf", d["conf"]],
        env={**env, "PYSPARK_PYTHON": env["RECJOB_EXECUTOR_PYTHON"], "PYSPARK_DRIVER_PYTHON": sys.executable},
        capture_output=True, text=True, cap_s=2700)
    assert submit.returncode == 0, submit.stderr[-4000:]
    ran = [line for line in (submit.stdout + submit.stderr).splitlines() if "master=" in line]
    assert ran and f"master=spark://127.0.0.1:{PORTS['RECJOB_SPARK_MASTER_PORT']}" in ran[0], ran  # on the cluster
    first = beeline(d, VERSION)
    n, users, top = (int(v) for v in first[0])
    assert users > 100 and top == 10 and n == 10 * users
    assert psql(d, "serving", SERVED) == [[str(n), str(users), "10"]]  # the serving copy, read without Spark
    similar = beeline(d, f"SELECT count(*) FROM recjob.item_neighbours WHERE ds = '{DS}'")[0][0]
    assert int(similar) > 0 and psql(d, "serving", f"SELECT count(*) FROM item_neighbours WHERE ds = '{DS}'") == [
        [similar]]  # the similar items' serving copy, in the same transaction as the lists

    # The DAG reruns the ds on the cluster with top_n 5, an analyst polls the published table meanwhile.
    reads, served, stop = [], [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                reads.append(tuple(beeline(d, VERSION)[0]))
                served.append(tuple(psql(d, "serving", SERVED)[0]))
            except Exception as exc:  # a refused or failed query is a failure of the deployment
                reads.append(("failed", str(exc)[-300:]))
            time.sleep(1)

    airflow_env = {**env,
                   "AIRFLOW_HOME": str(d["home"] / "airflow"),
                   "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                   "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
                       {"conn_type": "spark", "host": "spark://127.0.0.1", "port": int(PORTS["RECJOB_SPARK_MASTER_PORT"])}),
                   "AIRFLOW_CONN_RECJOB_METASTORE": json.dumps(
                       {"conn_type": "postgres", "host": "127.0.0.1", "port": int(PORTS["RECJOB_PG_PORT"]),
                        "schema": "metastore", "login": env["RECJOB_METASTORE_USER"],
                        "password": env["RECJOB_METASTORE_PASSWORD"]}),
                   "RECJOB_METASTORE_CONN_ID": "recjob_metastore",
                   "AIRFLOW_CONN_RECJOB_SERVING": json.dumps(
                       {"conn_type": "postgres", "login": env["RECJOB_METASTORE_USER"],
                        "password": env["RECJOB_METASTORE_PASSWORD"]}),
                   "RECJOB_SERVING_CONN_ID": "recjob_serving",
                   "RECJOB_BIN": str(BIN), "RECJOB_PY_FILES": d["zip"], "RECJOB_RETRIES": "0",
                   "RECJOB_EXECUTOR_PYTHON": env["RECJOB_EXECUTOR_PYTHON"], "RECJOB_DRIVER_CLASS_PATH": JDBC_JAR}
    # The DAG takes the metastore connection from Airflow alone: no RECJOB_METASTORE_* in its environment.
    for key in ("RECJOB_METASTORE_URL", "RECJOB_METASTORE_USER", "RECJOB_METASTORE_PASSWORD", "RECJOB_SERVING_USER",
                "RECJOB_SERVING_PASSWORD"):
        airflow_env.pop(key)
    run_capped([str(BIN / "airflow"), "db", "migrate"], env=airflow_env, check=True, capture_output=True, cap_s=900)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        run = run_capped([str(BIN / "airflow"), "dags", "test", "recjob_amazon_movies", DS,
                              "-c", json.dumps({"top_n": 5})],
                             env=airflow_env, capture_output=True, text=True, cap_s=3600)
    finally:
        stop.set()
        poller.join(timeout=180)
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "failed" not in {s.split()[0] for s in log.splitlines() if "state=" in s}, log[-6000:]
    after = beeline(d, VERSION)
    assert tuple(int(v) for v in after[0]) == (5 * users, users, 5), log[-3000:]
    whole = {(str(n), str(users), "10"), (str(5 * users), str(users), "5")}
    assert len(reads) >= 5 and all(r in whole for r in reads), (len(reads), [r for r in reads if r not in whole][:5])
    assert reads[0] == (str(n), str(users), "10")  # the poller read while the DAG's first tasks were writing
    assert all(r in whole for r in served), [r for r in served if r not in whole][:5]  # one transaction
    assert psql(d, "serving", SERVED) == [[str(5 * users), str(users), "5"]]
    assert psql(d, "serving", "SELECT indexdef FROM pg_indexes WHERE tablename = 'recommendations'") == [
        ['CREATE INDEX recommendations_ds_user ON public.recommendations USING btree (ds, "reviewerID")']]

    tables = {row[1] for row in beeline(d, "SHOW TABLES IN recjob")}
    assert {"reviews", "interactions", "scores", "evaluation", "recommendations"} <= tables
    # The catalog is in PostgreSQL, not in a Derby folder under data_dir.
    assert not (d["data"] / "metastore_db").exists()
    assert int(psql(d, "metastore", 'SELECT count(*) FROM "TBLS"')[0][0]) >= len(tables)


HOLD = """
import sys, time
from recjob import config, locks, session
cfg = config.load(sys.argv[1], ["spark.master=local[1]"])
spark = session.session(cfg)
with locks.metastore_lock(spark, dict(cfg.spark.conf), cfg.database, sys.argv[2], "a test's run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_two_runs_of_one_ds_sharing_the_catalog_are_refused(deployment, tmp_path):
    """Two runs with their own data_dir (so their own lock files) but one catalog would still overwrite each
    other's tables: the lock in the metastore database refuses the second at once, and a killed holder frees it."""
    import signal

    d, ds = deployment, "2026-02-22"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, d["conf"], ds], env=d["env"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        other = ["--conf", d["conf"], "--set", f"data_dir={tmp_path}", "--set", "spark.master=local[1]"]
        second = run_capped([str(BIN / "recjob"), "ingest", "--ds", ds, *other], env=d["env"],
                                capture_output=True, text=True, cap_s=1800)
        assert second.returncode == 5, second.stderr[-3000:]
        assert f"ds={ds} of database recjob is being run by a test's run" in second.stderr
        assert "a lock in the metastore database" in second.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    probe = run_capped([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), d["conf"], ds],
                           env=d["env"], capture_output=True, text=True, cap_s=1800)
    assert probe.stdout.strip() == "held", probe.stderr[-2000:]  # the killed holder's lock went with it
