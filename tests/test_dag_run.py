"""Real `airflow dags test` runs: every task launches spark-submit on local[2] with SQLite metadata.

One scenario, as an operator meets it: a failure (missing input, clear message, task failed), a rerun of that
date after fixing the input (no duplicates), and the next weekly date (two complete partitions, stable ids), each
checked from new processes; then the example consumer and a publish under a shorter retention. (Two complete
runs, not more: each is eight spark-submits, about four minutes on 2 cores.)
"""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_capped, small_run_conf

pytest.importorskip("airflow.providers.apache.spark", reason="Airflow and its Spark provider are not installed")
pytestmark = pytest.mark.slow  # eight spark-submits per run: about four minutes each on 2 cores

BIN = Path(sys.executable).parent
DATES = ["2026-01-04", "2026-01-11"]
TOP_N = 5


@pytest.fixture
def env(tmp_path_factory):
    if shutil.which("spark-submit", path=str(BIN)) is None:
        pytest.skip(f"spark-submit not found in {BIN}")
    home = tmp_path_factory.mktemp("dagrun")
    data = home / "data"
    conf = home / "recjob.yaml"
    small_run_conf(conf, data, input={"reviews": f"{data}/incoming/reviews.json.gz",
                                      "metadata": f"{data}/incoming/meta.json.gz"},
                   train={"max_epochs": 5}, evaluate={"als_iterations": 5}, score={"top_n": TOP_N})

    e = dict(os.environ)
    e.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "RECJOB_CONF": str(conf),
        "RECJOB_BIN": str(BIN),
        "RECJOB_PYTHON": sys.executable,
        "RECJOB_RETRIES": "0",
        "PATH": f"{BIN}:{e.get('PATH', '')}",
    })
    run_capped([str(BIN / "airflow"), "db", "migrate"], env=e, check=True, capture_output=True, cap_s=900)
    return {"env": e, "conf": str(conf), "data": data}


def dags_test(env, ds):
    return run_capped([str(BIN / "airflow"), "dags", "test", "recjob_amazon_movies", ds], env=env["env"],
                          capture_output=True, text=True, cap_s=2700)


def sql(env, query):
    """Query the warehouse by table name from a new process; rows as lists of strings."""
    out = run_capped([str(BIN / "recjob"), "sql", "--conf", env["conf"], query], env=env["env"],
                         capture_output=True, text=True, cap_s=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return [line.split("\t") for line in lines[1:]]


def generate(env):
    gen = run_capped([str(BIN / "recjob"), "generate", "--conf", env["conf"], "--reviews", "5000"],
                         env=env["env"], capture_output=True, text=True, cap_s=900)
    assert gen.returncode == 0, gen.stderr[-2000:]


def check_partition(env, ds):
    (n_rows, n_users, lo, hi, n_pairs), = sql(env, f"""
        SELECT count(*), count(DISTINCT reviewerID), min(c), max(c), count(DISTINCT concat(reviewerID, '/', asin))
        FROM recjob.recommendations r
        JOIN (SELECT reviewerID AS u, count(*) AS c FROM recjob.recommendations WHERE ds = '{ds}' GROUP BY reviewerID) x
          ON r.reviewerID = x.u
        WHERE ds = '{ds}'""")
    (sampled,), = sql(env, f"SELECT count(DISTINCT reviewerID) FROM recjob.interactions WHERE ds = '{ds}'")
    assert int(n_users) == int(sampled) > 0  # the expected users: every user of the ds's sample
    assert int(hi) == TOP_N and int(lo) >= 1
    assert int(n_pairs) == int(n_rows)  # no duplicated (user, item)
    return int(n_rows)


def test_a_failed_date_is_rerun_then_the_next_date_adds_a_second_partition(env):
    # a missing input: clear message, task failed
    first = dags_test(env, DATES[0])
    log = first.stdout + first.stderr
    assert first.returncode != 0
    assert "recjob: ingest failed: MissingInputError: ingest: no files at" in log
    assert "(input.reviews): the path or glob matches nothing" in log
    assert "new_state=failed" in log
    # the input fixed, the same date rerun: complete, and no (user, item) twice
    generate(env)
    second = dags_test(env, DATES[0])
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert "publish ds=2026-01-04: done" in second.stdout + second.stderr
    check_partition(env, DATES[0])
    # the next date
    run = dags_test(env, DATES[1])
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    parts = sql(env, "SELECT ds, count(*) FROM recjob.recommendations GROUP BY ds ORDER BY ds")
    assert [p[0] for p in parts] == DATES
    for ds in DATES:
        check_partition(env, ds)
    # ids stay stable across the dates: the second run's map extends the first's
    (changed,), = sql(env, f"""
        SELECT count(*) FROM recjob.user_index a JOIN recjob.user_index b ON a.reviewerID = b.reviewerID
        WHERE a.ds = '{DATES[0]}' AND b.ds = '{DATES[1]}' AND a.user_idx != b.user_idx""")
    assert changed == "0"
    # the example consumer, scheduled on the published asset, queries the newest partition by name
    consumer = run_capped([str(BIN / "airflow"), "dags", "test", "recjob_published_consumer", DATES[-1]],
                          env=env["env"], capture_output=True, text=True, cap_s=900)
    log = consumer.stdout + consumer.stderr
    assert consumer.returncode == 0 and "newest_recommendations" in log, log[-3000:]
    assert f"{DATES[-1]}\t" in log, log[-3000:]  # the query's row: the newest ds, its rows and users
    # retention: a publish that keeps one working ds expires the first ds's working tables, not its lists
    kept = run_capped([str(BIN / "recjob"), "publish", "--conf", env["conf"], "--ds", DATES[-1],
                       "--set", "retention.working=1"], env=env["env"], capture_output=True, text=True, cap_s=900)
    assert kept.returncode == 0 and f"retention: removed ds={DATES[0]}" in kept.stderr, kept.stderr[-3000:]
    assert sql(env, "SELECT DISTINCT ds FROM recjob.reviews") == [[DATES[-1]]]
    assert [p[0] for p in sql(env, "SELECT DISTINCT ds FROM recjob.recommendations ORDER BY ds")] == DATES
