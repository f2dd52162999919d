"""Progress of long work in the stage log: each stage's start, what it read and wrote and how long it took
(``stage_timer``); Spark tasks done / total with rate and ETA; and a rate/ETA helper for loops the driver runs
itself (training epochs).

``spark_progress`` runs a daemon thread beside a stage that asks Spark's status tracker, every ``every_s``
seconds, how many tasks of the running stages are done, and logs a line when something is running:

    score ds=2026-01-04: Spark stage 41 (mapInArrow at ...): 5/8 tasks, 0.42 tasks/s, ETA 7s

Nothing is logged for work that ends before the first interval, so short stages stay quiet.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Iterator

log = logging.getLogger("recjob.progress")
stage_log = logging.getLogger("recjob.stages")


@contextlib.contextmanager
def stage_timer(name: str, ds: str) -> Iterator[dict]:
    """Log a stage's start, what it read and wrote (the stage record it fills in) and how long it took."""
    record: dict = {"stage": name, "ds": ds}
    stage_log.info("%s ds=%s: start", name, ds)
    t0 = time.monotonic()
    try:
        yield record
    except Exception:
        stage_log.error("%s ds=%s: failed after %.1fs", name, ds, time.monotonic() - t0)
        raise
    record["seconds"] = round(time.monotonic() - t0, 1)
    stage_log.info("%s ds=%s: done in %.1fs: %s", name, ds, record["seconds"],
             json.dumps({k: v for k, v in record.items() if k not in ("stage", "ds", "seconds")}, default=str))


def eta(done: float, total: float, elapsed_s: float) -> tuple[float, float | None]:
    """(rate per second, seconds left or None) after ``done`` of ``total`` units in ``elapsed_s`` seconds."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if rate <= 0 or total <= 0:
        return rate, None
    return rate, max(total - done, 0) / rate


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def stage_lines(tracker, started: dict, now: float, since: float) -> list[str]:
    """One line per active Spark stage: tasks done / total, rate, ETA. ``started`` maps a stage id to (time,
    tasks done then) and is updated: a stage not seen before started after the previous poll at ``since`` with
    none done, so its rate is counted from then (a lower bound on the rate, an upper bound on the ETA)."""
    lines = []
    for sid in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(sid)
        if info is None or info.numTasks <= 0:
            continue
        t0, done0 = started.setdefault(sid, (since, 0))
        rate, left = eta(info.numCompletedTasks - done0, info.numTasks - done0, now - t0)
        name = (info.name or "").split(" at ")[0]
        lines.append(f"Spark stage {sid} ({name}): {info.numCompletedTasks}/{info.numTasks} tasks, "
                     f"{rate:.2f} tasks/s, ETA {duration(left)}")
    return lines


@contextlib.contextmanager
def spark_progress(spark, label: str, every_s: float = 30.0) -> Iterator[None]:
    """Log the progress of ``spark``'s running stages every ``every_s`` seconds while the block runs."""
    if spark is None or every_s <= 0:
        yield
        return
    tracker = spark.sparkContext.statusTracker()
    stop = threading.Event()
    started: dict = {}

    def watch():
        since = time.monotonic()
        while not stop.wait(every_s):
            try:
                now = time.monotonic()
                for line in stage_lines(tracker, started, now, since):
                    log.info("%s: %s", label, line)
                since = now
            except Exception as exc:  # the session went away: progress is not worth a failure
                log.debug("progress: %s", exc)
                return

    thread = threading.Thread(target=watch, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
