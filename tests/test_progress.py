"""Progress lines of long work: rate and ETA arithmetic, and Spark task progress logged while a job runs."""
import logging
import re
import time
from types import SimpleNamespace

from recjob import progress


def test_rate_eta_and_durations():
    assert progress.eta(30, 120, 10.0) == (3.0, 30.0)
    assert progress.eta(0, 120, 10.0) == (0.0, None)  # nothing done yet: no estimate
    assert [progress.duration(s) for s in (None, 4.6, 75, 7322)] == ["unknown", "5s", "1m15s", "2h02m"]


def test_stage_lines_from_the_status_tracker():
    infos = {3: SimpleNamespace(numTasks=8, numCompletedTasks=2, name="mapInPandas at x.py:1"),
             4: SimpleNamespace(numTasks=0, numCompletedTasks=0, name="empty")}
    tracker = SimpleNamespace(getActiveStageIds=lambda: [4, 3], getStageInfo=infos.get)
    started = {}
    # first seen at 100 s with 2 done: it started after the previous poll (96 s), so at least 0.5 tasks/s
    assert progress.stage_lines(tracker, started, 100.0, 96.0) == [
        "Spark stage 3 (mapInPandas): 2/8 tasks, 0.50 tasks/s, ETA 12s"]
    infos[3].numCompletedTasks = 5
    assert progress.stage_lines(tracker, started, 106.0, 100.0) == [
        "Spark stage 3 (mapInPandas): 5/8 tasks, 0.50 tasks/s, ETA 6s"]


def test_running_spark_work_is_logged(spark, caplog):
    def slow(batches):
        for pdf in batches:
            time.sleep(1.0)
            yield pdf

    caplog.set_level(logging.INFO, logger="recjob.progress")
    with progress.spark_progress(spark, "test ds=x", every_s=0.2):
        spark.range(0, 4, numPartitions=4).mapInPandas(slow, "id long").collect()
    lines = [r.getMessage() for r in caplog.records if r.name == "recjob.progress"]
    assert any(re.fullmatch(r"test ds=x: Spark stage \d+ \(.*\): \d/4 tasks, .* tasks/s, ETA .*", m) for m in lines), lines
    n = len(lines)
    time.sleep(0.5)
    assert len([r for r in caplog.records if r.name == "recjob.progress"]) == n  # stopped with the block
