"""The pipeline stages (their order: ``recjob.names.STAGES``). Each module's ``run(cfg, spark, ds)`` reads its
inputs, transforms them and writes its outputs; ``stage_timer`` logs what it read, wrote and how long it took."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Iterator

from recjob.names import STAGES as ORDER  # noqa: F401 (the one list of stages, re-exported)

log = logging.getLogger("recjob.stages")


@contextlib.contextmanager
def stage_timer(name: str, ds: str) -> Iterator[dict]:
    """Log a stage's start, what it read and wrote (the stage record it fills in) and how long it took."""
    record: dict = {"stage": name, "ds": ds}
    log.info("%s ds=%s: start", name, ds)
    t0 = time.monotonic()
    try:
        yield record
    except Exception:
        log.error("%s ds=%s: failed after %.1fs", name, ds, time.monotonic() - t0)
        raise
    record["seconds"] = round(time.monotonic() - t0, 1)
    log.info("%s ds=%s: done in %.1fs: %s", name, ds, record["seconds"],
             json.dumps({k: v for k, v in record.items() if k not in ("stage", "ds", "seconds")}, default=str))
