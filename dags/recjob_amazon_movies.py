"""recjob on Airflow: one SparkSubmitOperator per stage, in pipeline order, for the run's logical date.

This file only wires tasks. Of recjob it imports, when recjob is importable here, the names module (the stage
order and exit codes), the config loader (the params' defaults) and the model registry (the model parameter's
choices); it works without them (Airflow may run in its own environment). Where the
jobs, their config and their Python live comes from environment variables read when the DAG is parsed,
so the same file serves the embedded default and a cluster:

  RECJOB_HOME           folder holding jobs/ and conf/ (default: this file's project root)
  RECJOB_CONF           recjob YAML config passed to every job (default: $RECJOB_HOME/conf/local.yaml)
  RECJOB_DATA_DIR       overrides data_dir of that config (give an absolute path or URL; default: none)
  RECJOB_SPARK_CONN_ID  Airflow connection of the Spark master (default: spark_default)
  RECJOB_PYTHON         Python of the job runtime, for the driver and executors (default: python3 on PATH)
  RECJOB_EXECUTOR_PYTHON  the executors' Python when it differs (numpy, pandas, pyarrow; default: RECJOB_PYTHON)
  RECJOB_DRIVER_CLASS_PATH  --driver-class-path, e.g. the PostgreSQL JDBC driver for spark.metastore: postgres
  RECJOB_METASTORE_CONN_ID  Airflow connection (postgres) of the metastore database for spark.metastore: postgres;
                        its host, port, schema (database), login and password reach the job as environment
                        variables, masked in Airflow's logs (default: none)
  RECJOB_SERVING_CONN_ID  Airflow connection whose login and password are the serving database's user and
                        password, for publish.jdbc_url (default: none)
  RECJOB_BIN            folder put first on PATH for spark-submit, e.g. the job venv's bin (default: none)
  RECJOB_PY_FILES       comma-separated --py-files, e.g. dist/recjob.zip (default: none)
  RECJOB_RETRIES        task retries, with exponential backoff from 2 minutes (default: 2)
  RECJOB_TASK_TIMEOUT_HOURS  a task still running after this long is killed (its spark-submit with it) and
                        retried, so that a stalled job fails instead of holding the run forever (default: 6, far
                        above the full Movies_and_TV category's longest stage on 2 cores)

Run settings (input, time window, top-N, model) are DAG params, defaulting to the values in RECJOB_CONF.
A task that fails with one of recjob's refusal exit codes (bad configuration, refused input, quality gate) fails
at once without retries: a retry cannot change the answer. Other failures are retried with backoff.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException

HOME = Path(os.environ.get("RECJOB_HOME", Path(__file__).resolve().parents[1]))
CONF = os.environ.get("RECJOB_CONF", str(HOME / "conf" / "local.yaml"))
CONN_ID = os.environ.get("RECJOB_SPARK_CONN_ID", "spark_default")
PYTHON = os.environ.get("RECJOB_PYTHON", "python3")
EXECUTOR_PYTHON = os.environ.get("RECJOB_EXECUTOR_PYTHON") or PYTHON
DRIVER_CLASS_PATH = os.environ.get("RECJOB_DRIVER_CLASS_PATH") or None
METASTORE_CONN_ID = os.environ.get("RECJOB_METASTORE_CONN_ID", "")
SERVING_CONN_ID = os.environ.get("RECJOB_SERVING_CONN_ID", "")
BIN = os.environ.get("RECJOB_BIN", "")
PY_FILES = os.environ.get("RECJOB_PY_FILES") or None
DATA_DIR = os.environ.get("RECJOB_DATA_DIR", "")
RETRIES = int(os.environ.get("RECJOB_RETRIES", "2"))
TASK_TIMEOUT = timedelta(hours=float(os.environ.get("RECJOB_TASK_TIMEOUT_HOURS", "6")))
LOG4J = HOME / "conf" / "log4j2.properties"  # Spark at WARN: task logs show recjob's own stage reports

try:  # recjob's names when it is importable here (it needs neither Spark nor TensorFlow for them)
    from recjob.names import EXIT_MEANING, EXIT_NO_RETRY, PUBLISHED_TABLES, STAGES, asset_uri
except ImportError:  # Airflow in its own environment: the same values (tests/test_dags.py keeps them equal)
    STAGES = ("ingest", "sample", "ids", "shards", "train", "score", "evaluate", "publish")
    EXIT_NO_RETRY = (2, 3, 4, 6)
    EXIT_MEANING = {2: "bad configuration", 3: "input refused: unreadable file or too many invalid lines",
                    4: "quality gate refused the model: nothing published",
                    6: "permission denied or read-only filesystem: fix access, then rerun"}
    PUBLISHED_TABLES = ("recommendations", "item_neighbours")

    def asset_uri(database: str, table: str) -> str:
        return f"recjob://{database}/{table}"

RESULT_FILE_ENV = "RECJOB_RESULT_FILE"  # where the job leaves its exit code (recjob.cli)


def _exit_code(result_file: str) -> int | None:
    """The job's exit code from the result file it wrote (None: it wrote none, e.g. it never started)."""
    try:
        with open(result_file, encoding="utf-8") as fh:
            return int(json.load(fh)["exit"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RecjobSubmitOperator(SparkSubmitOperator):
    """spark-submit of one recjob stage; a failure that a retry cannot change fails the task at once. The job
    writes its exit code to a file named in its environment (the driver runs here in client mode; in cluster
    mode no file comes back and every failure is retried)."""

    def execute(self, context):
        fd, result_file = tempfile.mkstemp(prefix="recjob-result-", suffix=".json")
        os.close(fd)
        self.env_vars = {**(self.env_vars or {}), RESULT_FILE_ENV: result_file}
        try:
            return super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            code = _exit_code(result_file)
            if code in EXIT_NO_RETRY:
                raise AirflowFailException(f"recjob exit code {code} ({EXIT_MEANING[code]}): not retried. {exc}") from exc
            raise
        finally:
            os.unlink(result_file)


def _conf_defaults(path: str) -> dict:
    """Param defaults from the recjob config: through recjob's own loader when recjob is importable here (its
    checks and built-in defaults), else read as plain YAML (Airflow in its own environment)."""
    try:
        from recjob import config
    except ImportError:
        config = None
    if config is not None:
        from recjob import models

        try:
            cfg = config.load(path, resolve_env=False)
        except config.ConfigError:
            cfg = config.Config()  # the job refuses the file itself, with the reason (exit 2)
        i, t = cfg.input, cfg.train
        kind_default = models.get(t.model).settings().get("factors") if t.model in models.KINDS else None
        return {"database": cfg.database, "reviews": i.reviews, "metadata": i.metadata, "window_start": cfg.sample.start,
                "window_end": cfg.sample.end, "top_n": cfg.score.top_n, "model": t.model,
                "factors": None if t.factors == kind_default else t.factors}  # None: the model kind's default
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            conf = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        conf = {}
    section = lambda name: conf.get(name) or {}  # noqa: E731
    return {
        "database": conf.get("database", "recjob"),
        "reviews": section("input").get("reviews", "raw/reviews.json.gz"),
        "metadata": section("input").get("metadata", "raw/meta.json.gz"),
        "window_start": str(section("sample").get("start", "2018-01-01")),
        "window_end": str(section("sample").get("end", "2019-01-01")),
        "top_n": int(section("score").get("top_n", 10)),
        "model": section("train").get("model", "softmax"),
        "factors": section("train").get("factors"),  # None: the model kind's default
    }


DEFAULTS = _conf_defaults(CONF)
# The published tables as Airflow Assets: publish updates them, so a downstream DAG can run on
# "recommendations of recjob published" (dags/recjob_published_consumer.py).
PUBLISHED_ASSETS = [Asset(asset_uri(DEFAULTS["database"], t)) for t in PUBLISHED_TABLES]


def _model_choices() -> tuple[dict, str]:
    """The model kinds of recjob's registry when recjob is importable here (it needs neither Spark nor
    TensorFlow); otherwise a free string, which the job's configuration check refuses (exit 2, no retry) if the
    kind is unknown."""
    try:
        from recjob import models
    except ImportError:
        return {}, "a model kind of recjob's registry (recjob.models)"
    return {"enum": list(models.names())}, "; ".join(f"{n}: {k.summary}" for n, k in models.KINDS.items())


MODEL_CHOICES, MODEL_HELP = _model_choices()

# Every job gets the run date and the same overrides, rendered from the params at run time.
JOB_ARGS = [
    "--ds", "{{ ds }}",
    "--conf", CONF,
    "--set", "input.reviews={{ params.reviews }}",
    "--set", "input.metadata={{ params.metadata }}",
    "--set", "sample.start={{ params.window_start }}",
    "--set", "sample.end={{ params.window_end }}",
    "--set", "score.top_n={{ params.top_n }}",
    "--set", "train.model={{ params.model }}",
    "--set", "train.factors={{ params.factors | default('null', true) }}",
] + (["--set", f"data_dir={DATA_DIR}"] if DATA_DIR else [])

ENV = {"PYSPARK_PYTHON": EXECUTOR_PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON}
if METASTORE_CONN_ID:  # rendered at run time from the connection: never in the DAG file or on a command line
    _conn = f"conn['{METASTORE_CONN_ID}']"
    ENV.update({
        "RECJOB_METASTORE_URL": f"jdbc:postgresql://{{{{ {_conn}.host }}}}:{{{{ {_conn}.port or 5432 }}}}/"
                                f"{{{{ {_conn}.schema }}}}",
        "RECJOB_METASTORE_USER": f"{{{{ {_conn}.login }}}}",
        "RECJOB_METASTORE_PASSWORD": f"{{{{ {_conn}.password }}}}",
    })
if BIN:
    ENV["PATH"] = f"{BIN}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}"

if SERVING_CONN_ID:
    ENV.update({"RECJOB_SERVING_USER": f"{{{{ conn['{SERVING_CONN_ID}'].login }}}}",
                "RECJOB_SERVING_PASSWORD": f"{{{{ conn['{SERVING_CONN_ID}'].password }}}}"})

default_args = {
    "owner": "recjob",
    "retries": RETRIES,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": TASK_TIMEOUT,  # on timeout Airflow calls on_kill: spark-submit is stopped
}

with DAG(
    dag_id="recjob_amazon_movies",
    description="Weekly top-N recommendations from Amazon Movies & TV reviews",
    schedule="@weekly",
    start_date=datetime(2026, 1, 4),
    catchup=False,  # backfill on purpose (airflow backfill / dags test), never by surprise
    max_active_runs=1,  # stages share a warehouse; the embedded metastore allows one JVM at a time
    default_args=default_args,
    params={
        "reviews": Param(DEFAULTS["reviews"], type="string",
                         description="review files (path, folder or glob; {ds} is the run date)"),
        "metadata": Param(DEFAULTS["metadata"], type="string", description="item metadata files ('' for none)"),
        "window_start": Param(DEFAULTS["window_start"], type="string", format="date"),
        "window_end": Param(DEFAULTS["window_end"], type="string", format="date"),
        "top_n": Param(DEFAULTS["top_n"], type="integer", minimum=1),
        "model": Param(DEFAULTS["model"], type="string", description=MODEL_HELP, **MODEL_CHOICES),
        "factors": Param(DEFAULTS["factors"], type=["null", "integer"], minimum=1,
                         description="embedding size; empty: the model kind's default"),
    },
    tags=["recjob"],
) as dag:
    previous = None
    for stage in STAGES:
        task = RecjobSubmitOperator(
            task_id=stage,
            conn_id=CONN_ID,
            application=str(HOME / "jobs" / f"{stage}.py"),
            application_args=JOB_ARGS,
            py_files=PY_FILES,
            driver_class_path=DRIVER_CLASS_PATH,
            name=f"recjob-{stage}-{{{{ ds }}}}",
            conf={"spark.pyspark.python": EXECUTOR_PYTHON, "spark.pyspark.driver.python": PYTHON,
                  "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J}"},
            env_vars=ENV,
            outlets=PUBLISHED_ASSETS if stage == STAGES[-1] else [],
        )
        if previous is not None:
            previous >> task
        previous = task
