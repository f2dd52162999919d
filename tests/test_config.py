import re

import pytest

from recjob import config
from recjob.config import ConfigError

from conftest import ROOT


def test_shipped_configs_load():
    local = config.load(str(ROOT / "conf" / "local.yaml"))
    assert local.train.model == "softmax" and local.sample.start == "2018-01-01"
    assert (local.train.l2, local.train.bias_l2) == (0.06, 0.0)  # the model default applies
    assert local.train.params.negatives == 2048 and local.train.min_steps_per_epoch == 20
    cluster = config.load(str(ROOT / "conf" / "cluster.example.yaml"))
    assert cluster.path("shards") == "hdfs:///data/recjob/shards"
    assert cluster.spark.conf["spark.hadoop.hive.metastore.uris"].startswith("thrift://")
    nxt = config.load(str(ROOT / "conf" / "next-item.yaml"))
    assert (nxt.input.format, nxt.shards.split, nxt.train.model, nxt.evaluate.max_users) == ("sequences", "temporal",
                                                                                             "sasrec", 0)
    assert (nxt.train.learning_rate, nxt.train.dropout) == (0.001, 0.5)  # the kind's, not the other kinds' defaults
    assert local.train.learning_rate == 0.01


def test_overrides_are_typed_and_nested():
    cfg = config.load(None, ["train.factors=64", "sample.start=2017-01-01", "sample.user_fraction=0.5",
                             "spark.conf.spark.sql.shuffle.partitions=3", "train.mlp.layers=[16, 8]", "train.model=mlp"])
    assert cfg.train.factors == 64
    assert cfg.sample.start == "2017-01-01"
    assert cfg.sample.user_fraction == 0.5
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert cfg.train.params.layers == (16, 8)


@pytest.mark.parametrize("override, message", [
    ("train.factorz=3", "unknown key"),
    ("train.factors=abc", "expected int"),
    ("sample.start=2019-05-01", "must be before"),
    ("sample.user_fraction=0", "user_fraction"),
    ("shards.split=sideways", "shards.split"),
    ("train.model=svd", "train.model"),
    ("train.factors=-3", "train.factors"),
    ("train.model=bpmf train.bpmf.samples=0", "train.bpmf.samples must be >= 1"),
    ("train.negatives=64", "write it train.<kind>.negatives"),
    ("train.mlp.layers=abc", "train.mlp.layers"),
    ("train.factors=0", "leave it unset for the model's default"),
    ("train.l2=-1", "train.l2"),
    ("shards.history_length=-1", "shards.history_length"),
    ("train.model=seq shards.history_length=0", "learns from item histories: shards.history_length must be >= 1"),
    ("train.model=seq train.seq.markov_order=60", "must be in 1..shards.history_length=50"),
    ("novalue", "expected key=value"),
    ("input.incremental=true", "input.incremental=true needs {ds} in input.reviews"),
    ("input.incremental=true input.reviews=in/{ds}.txt input.format=sequences", "needs a line format with times"),
    ("input.incremental=true input.reviews=in/{ds}.json input.test=t.json", "a given test split"),
])
def test_bad_config_is_refused_with_reason(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load(None, override.split(" "))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(str(tmp_path / "nope.yaml"))


def test_relative_paths_resolve_under_data_dir(tmp_path):
    cfg = config.load(None, [f"data_dir={tmp_path}"])
    assert cfg.path("raw/x.json") == str(tmp_path / "raw" / "x.json")
    assert cfg.path("s3a://b/x") == "s3a://b/x"
    assert cfg.ds_path("shards", "2020-01-02") == str(tmp_path / "shards" / "ds=2020-01-02")
    assert cfg.input_path("in/{ds}/*.json.{gz,bz2}", "2020-01-02") == str(tmp_path / "in/2020-01-02/*.json.{gz,bz2}")


def test_model_defaults_and_explicit_values():
    assert config.load(None, ["train.model=dot"]).train.l2 == 0.15
    assert config.load(None, ["train.model=dot", "train.l2=0.5"]).train.l2 == 0.5
    assert config.load(None, ["train.model=bpr"]).train.bias_l2 == 0.0
    assert config.load(None, []).train.factors == 32
    assert config.load(None, ["train.model=bpmf"]).train.factors == 10
    assert config.load(None, ["train.model=bpmf", "train.factors=16"]).train.factors == 16
    assert config.load(str(ROOT / "conf" / "local.yaml"), ["train.model=bpmf"]).train.factors == 10  # the shipped conf leaves it 0


def test_float_lists():
    assert config.load(None, ["evaluate.als_implicit_regs=[1, 0.5]"]).evaluate.als_implicit_regs == (1.0, 0.5)
    for bad in ("[]", "[-1]", "[true]", "0.5"):
        with pytest.raises(ConfigError, match="als_implicit_regs"):
            config.load(None, [f"evaluate.als_implicit_regs={bad}"])


@pytest.mark.parametrize("override, message", [
    ("gate.min_ndcg_vs_popularity=.nan", "gate.min_ndcg_vs_popularity must be a finite number"),
    ("gate.max_rmse_vs_bias=.inf", "gate.max_rmse_vs_bias must be a finite number"),
    ("gate.min_ndcg_vs_popularity=-0.5", "gate.min_ndcg_vs_popularity must be >= 0"),
    ("train.learning_rate=.nan", "train.learning_rate must be a finite number"),
    ("shards.validation_fraction=.nan", "shards.validation_fraction must be a finite number"),
    ("evaluate.als_implicit_regs=[1, .nan]", "evaluate.als_implicit_regs must be a finite number"),
    ("shards.rows_per_file=0", "rows_per_file"),
    ("train.dropout=5", "train.dropout=5.0 must be in"),
    ("score.top_n=1e8", "score.top_n: expected int"),
    ("score.top_n=100000000", "score.top_n must be in 1..1000"),
    ("sample.start=2018-02-30", "sample.start='2018-02-30' is not a date"),
    ("database=é", "plain ASCII identifier"),
    ("input.reviews=", "input.reviews is empty"),
    ("ingest.max_bad_fraction=2", "ingest.max_bad_fraction"),
    ("evaluate.als_blocks=-1", "evaluate.als_blocks must be >= 0"),
    ("train.factors=[unclosed", "not valid YAML"),
])
def test_values_that_would_misbehave_are_refused(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.load(None, [override])


def test_numbers_in_exponent_form_are_numbers_and_dates_stay_text(tmp_path):
    cfg = config.load(None, ["train.learning_rate=1e-9", "gate.max_rmse_vs_bias=2E0"])
    assert cfg.train.learning_rate == 1e-9 and cfg.gate.max_rmse_vs_bias == 2.0
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 5e-4\nsample:\n  start: 2017-01-01\n")
    cfg = config.load(str(path))
    assert cfg.train.learning_rate == 5e-4 and cfg.sample.start == "2017-01-01"


def test_secrets_come_from_the_environment_only():
    key = "spark.conf.spark.hadoop.javax.jdo.option.ConnectionPassword"
    cfg = config.load(None, [f"{key}=${{METASTORE_PW}}"], environ={"METASTORE_PW": "s3cr3t"})
    assert cfg.spark.conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] == "s3cr3t"
    with pytest.raises(ConfigError, match=r"holds a secret: give it as \$\{VAR\}") as caught:
        config.load(None, [f"{key}=s3cr3t"])
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError, match="not set in the environment"):
        config.load(None, [f"{key}=${{NOPE_NOT_SET}}"], environ={})
    assert config.load(None, ["spark.conf.spark.x=${HOME_DIR}"], environ={"HOME_DIR": "/h"}).spark.conf["spark.x"] == "/h"


def test_the_serving_copy_takes_its_credentials_from_the_environment_only():
    url = ["publish.jdbc_url=jdbc:postgresql://127.0.0.1:5432/serving"]
    with pytest.raises(ConfigError, match="RECJOB_SERVING_USER and RECJOB_SERVING_PASSWORD must be set"):
        config.load(None, url, environ={})
    with pytest.raises(ConfigError, match="not from the config"):
        config.load(None, url + ["publish.jdbc_password=hunter2"], environ={"RECJOB_SERVING_USER": "u",
                                                                      "RECJOB_SERVING_PASSWORD": "p"})
    with pytest.raises(ConfigError, match="must be a jdbc:postgresql:// URL"):
        config.load(None, ["publish.jdbc_url=postgres://x/y"], environ={})
    cfg = config.load(None, url, environ={"RECJOB_SERVING_USER": "u", "RECJOB_SERVING_PASSWORD": "s3cret-value"})
    assert (cfg.publish.jdbc_user, cfg.publish.jdbc_password) == ("u", "s3cret-value")
    assert "s3cret-value" not in repr(cfg)


def test_a_postgres_metastore_names_the_missing_variables():
    with pytest.raises(ConfigError, match="spark.metastore=postgres needs RECJOB_METASTORE_URL, "
                                          "RECJOB_METASTORE_USER, RECJOB_METASTORE_PASSWORD in the environment"):
        config.load(None, ["spark.metastore=postgres"], environ={})
    env = {"RECJOB_METASTORE_URL": "jdbc:postgresql://h:1/m", "RECJOB_METASTORE_USER": "u",
           "RECJOB_METASTORE_PASSWORD": "pw"}
    conf = config.load(None, ["spark.metastore=postgres"], environ=env).spark.conf
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == "jdbc:postgresql://h:1/m"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] == "pw"
    assert conf["spark.hadoop.datanucleus.schema.autoCreateConstraints"] == "false"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\n"


@pytest.mark.parametrize("text, message", [
    (BOMB, "anchors and aliases"),
    ("train:\n  factors: &f 8\nscore:\n  top_n: *f\n", "anchors and aliases"),
    ("train:\n  factors: 8\n  factors: 16\n", "'factors' appears twice"),
    ("spark:\n  conf:\n    spark.x: 1\n    spark.x: 2\n", "'spark.x' appears twice"),
    ("train: {factors: 8}\ntrain: {l2: 0.1}\n", "'train' appears twice"),
])
def test_config_files_refuse_aliases_and_duplicate_keys(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load(str(path))


@pytest.mark.parametrize("value", ["[&a [1, 2], *a, *a]", "{a: 1, a: 2}", "&x 8"])
def test_set_values_refuse_aliases_and_duplicate_keys(value):
    with pytest.raises(ConfigError, match="--set"):
        config.load(None, [f"spark.conf={value}" if value.startswith("{") else f"train.mlp_layers={value}"])


def test_config_paths_that_are_not_regular_files_are_refused_at_once(tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * config.MAX_CONFIG_BYTES + "\n")
    for path in (tmp_path, "/dev/zero", fifo):
        with pytest.raises(ConfigError, match="not a regular file"):
            config.load(str(path))
    with pytest.raises(ConfigError, match="bytes"):
        config.load(str(big))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"train:\n  model: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(str(binary))


def test_cli_refuses_a_directory_as_config_with_exit_2(tmp_path, capsys):
    from recjob import cli

    assert cli.main(["sql", "--conf", str(tmp_path), "SELECT 1"]) == cli.EXIT_CONFIG
    assert "not a regular file" in capsys.readouterr().err


def test_the_settings_docs_are_generated_from_the_definitions(capsys):
    """README's table of sections and docs/configuration.md hold what `recjob settings` prints, and every
    setting has a meaning (a field added without its comment fails here)."""
    from recjob import cli
    from recjob.config import reference

    assert cli.main(["settings", "--sections"]) == 0
    sections = capsys.readouterr().out.strip()
    assert sections in (ROOT / "README.md").read_text(), \
        "README.md's table of sections differs: paste the output of `recjob settings --sections`"
    assert cli.main(["settings"]) == 0
    full = capsys.readouterr().out.strip()
    assert full in (ROOT / "docs" / "configuration.md").read_text(), \
        "docs/configuration.md differs: paste the output of `recjob settings`"
    rows = [line for line in full.splitlines() if line.startswith("| `")]
    assert len(rows) > 60 and not [r for r in rows if r.endswith("|  |")]
    assert "| `train.softmax.negatives` | `2048` |" in full and "`train.bpmf`" in reference.sections_table()
