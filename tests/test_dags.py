"""The DAG file: imports cleanly, wires the stages in pipeline order, renders the run date into every job."""
import os
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("airflow.providers.apache.spark", reason="Airflow and its Spark provider are not installed")

from recjob.names import STAGES


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


def test_dagbag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "recjob_amazon_movies" in dagbag.dags


def test_tasks_follow_pipeline_order(dagbag):
    dag = dagbag.dags["recjob_amazon_movies"]
    assert sorted(dag.task_ids) == sorted(STAGES)
    for upstream, downstream in zip(STAGES, STAGES[1:]):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.get_task(STAGES[0]).upstream_task_ids == set()
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.default_args["retries"] >= 1 and dag.default_args["retry_exponential_backoff"]
    assert all(dag.get_task(stage).execution_timeout.total_seconds() == 6 * 3600 for stage in STAGES)


def test_every_job_renders_the_ds_and_params(dagbag):
    dag = dagbag.dags["recjob_amazon_movies"]
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params["top_n"] = 7
    for stage in STAGES:
        task = dag.get_task(stage)
        assert task.application.endswith(f"jobs/{stage}.py") and Path(task.application).exists()
        args = task.render_template(task.application_args, {"ds": "2026-03-01", "params": params})
        assert args[:2] == ["--ds", "2026-03-01"]
        assert "score.top_n=7" in args
        assert f"sample.start={params['window_start']}" in args
        assert task.render_template(task.name, {"ds": "2026-03-01", "params": params}) == f"recjob-{stage}-2026-03-01"
        assert "{{" not in " ".join(map(str, args))


def test_refusals_fail_without_retry_and_other_failures_retry(dagbag, monkeypatch):
    """recjob's no-retry exit codes become AirflowFailException (no retries); other codes stay retryable."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from recjob import cli

    import json
    import sys

    module = sys.modules[type(dagbag.dags["recjob_amazon_movies"].get_task("publish")).__module__]
    assert set(module.EXIT_NO_RETRY) == set(cli.EXIT_NO_RETRY)
    task = dagbag.dags["recjob_amazon_movies"].get_task("publish")
    for code, retried in [(cli.EXIT_GATE_REFUSED, False), (cli.EXIT_INPUT_REFUSED, False),
                          (cli.EXIT_CONFIG, False), (cli.EXIT_DENIED, False), (cli.EXIT_FAILED, True),
                          (cli.EXIT_BUSY, True), (None, True)]:  # None: the job left no result (never started)
        def fail(self, context, code=code):  # the job leaves its code in the file the operator named
            if code is not None:
                with open(self.env_vars["RECJOB_RESULT_FILE"], "w") as fh:
                    json.dump({"exit": code}, fh)
            raise AirflowException("Cannot execute: spark-submit jobs/publish.py.")

        monkeypatch.setattr(SparkSubmitOperator, "execute", fail)
        with pytest.raises(AirflowException) as caught:
            task.execute({})
        assert isinstance(caught.value, AirflowFailException) is not retried, code


@pytest.mark.parametrize("factors, expected", [(None, 32), (16, 16)])
def test_the_rendered_settings_load_and_the_model_choices_are_the_registry(dagbag, factors, expected):
    from recjob import config, models

    dag = dagbag.dags["recjob_amazon_movies"]
    assert dag.params.get_param("model").schema["enum"] == list(models.names())
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params["factors"] = factors
    args = dag.get_task("train").render_template(dag.get_task("train").application_args,
                                                 {"ds": "2026-03-01", "params": params})
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    assert config.load(None, sets).train.factors == expected  # unset: the default kind's default


def test_the_dags_fallback_names_equal_recjobs(monkeypatch):
    """Where Airflow cannot import recjob the DAG keeps a copy of the stage order and exit codes: the same."""
    import importlib.util
    import sys

    from recjob import names

    monkeypatch.setitem(sys.modules, "recjob.names", None)  # import fails as where recjob is not installed
    path = Path(__file__).resolve().parents[1] / "dags" / "recjob_amazon_movies.py"
    spec = importlib.util.spec_from_file_location("dag_without_recjob", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert tuple(module.STAGES) == names.STAGES
    assert set(module.EXIT_NO_RETRY) == set(names.EXIT_NO_RETRY)
    assert tuple(module.PUBLISHED_TABLES) == names.PUBLISHED_TABLES and module.asset_uri("d", "t") == names.asset_uri("d", "t")
    assert all(module.EXIT_MEANING[c] == names.EXIT_MEANING[c] for c in names.EXIT_NO_RETRY)


def test_publish_updates_the_published_assets_and_the_example_consumer_runs_on_them(dagbag):
    from recjob import config
    from recjob.names import PUBLISHED_TABLES, Table, asset_uri

    database = config.load(str(ROOT / "conf" / "local.yaml"), resolve_env=False).database
    dag = dagbag.dags["recjob_amazon_movies"]
    outlets = {a.uri for a in dag.get_task(STAGES[-1]).outlets}
    assert outlets == {asset_uri(database, t) for t in PUBLISHED_TABLES}
    assert all(not dag.get_task(s).outlets for s in STAGES[:-1])  # only publish, after the switch, updates them
    consumer = dagbag.dags["recjob_published_consumer"]
    assert asset_uri(database, Table.RECOMMENDATIONS) in str(consumer.timetable.asset_condition)
    assert "recommendations" in consumer.get_task("newest_recommendations").bash_command
