"""One session-scoped local SparkSession for all tests; data is built in code or generated small."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file of the shared real datasets beside the project, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real dataset {path} is absent (it lives in ../shared/data beside the project root)")
    return path


@pytest.fixture(scope="session")
def spark_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark")


@pytest.fixture(scope="session")
def spark(spark_dir):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for noisy in ("petastorm", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from recjob import config, session

    cfg = config.load(None, [f"data_dir={spark_dir}", "spark.master=local[2]",
                             "spark.conf.spark.sql.shuffle.partitions=2",
                             "spark.conf.spark.default.parallelism=2",
                             "spark.conf.spark.driver.memory=2g",
                             "spark.conf.parquet.block.size=65536"])
    s = session.session(cfg)
    yield s
    s.stop()


@pytest.fixture
def make_cfg(tmp_path, request):
    """A config whose files live under a fresh tmp folder and whose tables live in a fresh database."""
    from recjob import config

    def make(*overrides: str):
        db = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:60].lower()
        return config.load(None, [f"data_dir={tmp_path}", f"database={db}", *overrides])

    return make


def run_capped(args, cap_s: float, **kwargs):
    """``subprocess.run`` under a generous cap (a busy machine only makes a run slower); when the cap is hit the
    test fails saying where the run was (its last output lines), not with a bare timeout."""
    import subprocess

    kwargs.setdefault("capture_output", True)
    try:
        return subprocess.run(args, timeout=cap_s, **kwargs)
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        tail = "\n".join((text(exc.stdout) + "\n" + text(exc.stderr)).strip().splitlines()[-80:])
        pytest.fail(f"{' '.join(map(str, args[:4]))} ... still running after its cap of {cap_s:.0f}s; its last "
                    f"output lines (where the run was):\n{tail}", pytrace=False)


# The slow tier's small whole-pipeline run: generated reviews of every year, a 3-core, a few epochs, small ALS.
SMALL_RUN = {
    "spark": {"conf": {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}},
    "sample": {"start": "2005-01-01", "end": "2019-01-01", "min_user_reviews": 3, "min_item_reviews": 3},
    "train": {"max_epochs": 3},
    "evaluate": {"als_rank": 8, "als_iterations": 4, "als_implicit_regs": [1.0]},
}


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def small_run_conf(path: Path, data_dir, **sections) -> str:
    """Write the small run's configuration with ``data_dir`` and ``sections`` merged into it to ``path``."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_merged(SMALL_RUN, {"data_dir": str(data_dir), **sections}), sort_keys=False))
    return str(path)
