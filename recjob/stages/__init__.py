"""The pipeline stages, in order. Each module has pure ``transform*`` functions and a ``run(cfg, spark, ds)``."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Iterator

log = logging.getLogger("recjob.stages")

ORDER = ("ingest", "sample", "ids", "shards", "train", "score", "evaluate", "publish")


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
