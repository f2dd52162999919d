"""The command's exit codes: what a scheduler needs to tell a retryable failure from a refusal."""
import gzip
import json

import pytest

from recjob import cli, locks

DS = "2024-03-03"


def _run(*argv):
    return cli.main(list(argv))


@pytest.mark.parametrize("override, message", [
    ("gate.min_ndcg_vs_popularity=.nan", "finite"), ("gate.max_rmse_vs_bias=-1", "gate."),
    ("train.learning_rate=.nan", "finite"), ("sample.user_fraction=.nan", "finite"),
    ("shards.rows_per_file=0", "rows_per_file"), ("train.dropout=5", "dropout"), ("score.top_n=1e8", "top_n"),
    ("sample.start=2018-02-30", "sample.start='2018-02-30'"), ("database=é", "ASCII"), ("input.reviews=", "empty"),
    ("database=x;DROP", "ASCII")])
def test_bad_configuration_exits_2_before_spark(override, message, capsys):
    assert _run("ingest", "--ds", DS, "--set", override) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("recjob: configuration error") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("ds", ["../2024-01-01", "2024-13-01", "2018-02-30", "yesterday"])
def test_a_bad_run_date_is_refused(ds):
    with pytest.raises(SystemExit) as caught:
        _run("ingest", "--ds", ds)
    assert caught.value.code == 2


def test_refused_input_exits_3_and_busy_ds_exits_5(spark, tmp_path, capsys):
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(b"garbage\n" + json.dumps({"reviewerID": "U"}).encode() + b"\n"))
    common = ["--ds", DS, "--set", f"data_dir={tmp_path}", "--set", "database=cli", "--set",
              f"input.reviews={bad}", "--set", "input.metadata="]
    assert _run("ingest", *common) == cli.EXIT_INPUT_REFUSED
    assert "input refused" in capsys.readouterr().err
    with locks.ds_lock(spark, str(tmp_path / "locks"), DS, "another run"):
        assert _run("ingest", *common) == cli.EXIT_BUSY
    assert "is being run by another run" in capsys.readouterr().err


class _Java:
    """A stand-in for a py4j Java exception chain: class name, message, cause."""

    def __init__(self, name, message, cause=None):
        self.name, self.message, self.cause = name, message, cause

    def getCause(self):  # noqa: N802 (Java's names)
        return self.cause

    def getMessage(self):  # noqa: N802
        return self.message

    def getClass(self):  # noqa: N802
        return type("C", (), {"getSimpleName": lambda _: self.name})()


class _JavaError(Exception):
    def __init__(self, chain):
        super().__init__("An error occurred while calling o284.parquet.\n" + "\tat org.apache...\n" * 200)
        self.java_exception = chain


@pytest.mark.parametrize("chain, code, reason", [
    (_Java("SparkException", "Job aborted", _Java("IOException", "No space left on device")), cli.EXIT_FAILED,
     "IOException: No space left on device"),
    (_Java("Py4JJavaError", "o57.createNewFile", _Java("AccessDeniedException", "/data/locks: Read-only file system")),
     cli.EXIT_DENIED, "AccessDeniedException: /data/locks: Read-only file system"),
    (_Java("SparkException", "x", _Java("FileNotFoundException", "/in (Permission denied)")), cli.EXIT_DENIED,
     "FileNotFoundException: /in (Permission denied)")])
def test_java_failures_print_their_root_cause_in_one_line_and_say_if_a_retry_helps(monkeypatch, capsys, chain, code,
                                                                                   reason):
    from recjob import pipeline, session

    def fail(*_):
        raise _JavaError(chain)

    import contextlib

    monkeypatch.setattr(session, "session", lambda cfg: None)
    monkeypatch.setattr(locks, "ds_lock", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(locks, "metastore_lock", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(pipeline, "run_stage", fail)
    assert cli.main(["sample", "--ds", DS]) == code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("recjob: sample failed: _JavaError: " + reason)
    assert ("not retried" in last) is (code in cli.EXIT_NO_RETRY) and "o284" not in last
    assert cli.exit_code(PermissionError(13, "Permission denied")) == cli.EXIT_DENIED


SLOW_STAGE = """
import sys, time
from recjob import cli, pipeline

def slow(name, cfg, spark, ds):
    print("running", flush=True)
    time.sleep(600)

pipeline.run_stage = slow
sys.argv = ["recjob", "sample", "--ds", "2024-03-03", "--set", f"data_dir={sys.argv[1]}", "--set", "spark.master=local[1]",
            "--set", "spark.conf.spark.ui.enabled=false"]
cli.console(sys.argv[1:])
"""


def test_sigterm_stops_a_command_releasing_its_locks_and_jvm(tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", SLOW_STAGE, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"  # no timeout: a slow machine only waits longer
    lock = tmp_path / "locks" / f"ds={DS}.lock"
    assert lock.exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode == cli.EXIT_FAILED, err[-2000:]
    assert "Terminated: stopped by signal" in err.splitlines()[-1]
    assert not lock.exists()  # the ds lock removed on the way out, not left for the next run to take over
    again = subprocess.run([sys.executable, "-m", "recjob", "sql", "SELECT 1", "--set", f"data_dir={tmp_path}",
                            "--set", "spark.master=local[1]"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]  # the metastore and the JVM were released
