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
