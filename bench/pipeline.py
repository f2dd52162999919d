"""The whole pipeline on data shaped like the full Movies_and_TV category: per stage wall time, rows in and out,
and peak memory of the driver, the JVM and the Python workers.

Data: ``recjob generate`` output (Movies_and_TV's ratios: ~2.3 reviews per user, ~48 per item, one ``.json.gz``
as published), made once per size and kept in ``--cache`` (default ``bench/.data/``, ignored by git).
Each stage runs as its own ``recjob <stage>`` process, as Airflow runs them (one spark-submit each), so a
stage's figures include its Spark start. Its process tree is sampled every 0.5 s (psutil, installed with
Airflow): resident memory of the recjob driver (Python), the JVM, and the Python workers (pyspark daemon and
workers), each the peak over the stage, and the peak of their sum; and the peak of their sum of anonymous
resident memory (``RssAnon`` in /proc, Linux only): RSS also counts the pages of files the JVM maps (Spark
memory-maps disk blocks above 2 MB, e.g. ALS's cached blocks spilled to disk), which the kernel can drop
when memory is short, while anonymous memory (heaps, Arrow buffers) it cannot. Rows in and out come from the
stage record each stage logs ("done in ...: {...}").

Configurations (``--config``):
  unsampled  every review: no time window, no k-core, top-10 for every user over every item
  5core      all time, users and items with >= 5 reviews (the 5-core subset)

    python bench/pipeline.py --reviews 1000000 --config unsampled
    python bench/pipeline.py --reviews 8765568 --users 3826085 --items 182032 --config unsampled
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from results_entry import recorded  # bench/ is on the path: scripts run from it

from recjob.names import STAGES

ROOT = Path(__file__).resolve().parents[1]
RECJOB = Path(sys.executable).parent / "recjob"
CONFIGS = {
    "unsampled": ["sample.start=1990-01-01", "sample.end=2100-01-01", "sample.min_user_reviews=1",
                  "sample.min_item_reviews=1"],
    "5core": ["sample.start=1990-01-01", "sample.end=2100-01-01", "sample.min_user_reviews=5",
              "sample.min_item_reviews=5"],
}
DONE = re.compile(r"INFO recjob\.stages: (\w+) ds=\S+: done in [\d.]+s: (\{.*\})$")


def kind_of(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "java" in proc.name() or "/java" in cmd.split(" ")[0]:
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd or "pyspark/worker" in cmd:
        return "workers"
    return "driver"


class Sampler:
    """Peak RSS per process kind over a process tree, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.5):
        self.root, self.every_s = psutil.Process(pid), every_s
        self.peak = {"driver": 0, "jvm": 0, "workers": 0, "total": 0, "anon": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            now = {"driver": 0, "jvm": 0, "workers": 0}
            anon = 0
            for p in procs:
                try:
                    now[kind_of(p) if p.pid != self.root.pid else "driver"] += p.memory_info().rss
                    anon += anon_rss(p.pid)
                except (psutil.Error, KeyError):
                    pass
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)
            self.peak["total"] = max(self.peak["total"], sum(now.values()))
            self.peak["anon"] = max(self.peak["anon"], anon)
            self.stop.wait(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def anon_rss(pid: int) -> int:
    """A process's anonymous resident memory in bytes (``RssAnon``), 0 where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def data_for(args) -> Path:
    folder = Path(args.cache) / f"movies-{args.reviews}-{args.users}-{args.items}-seed{args.seed}"
    if not (folder / "reviews.json.gz").exists():
        t0 = time.perf_counter()
        subprocess.run([str(RECJOB), "generate", "--reviews", str(args.reviews), "--users", str(args.users),
                        "--items", str(args.items), "--seed", str(args.seed), "--out", str(folder)], check=True)
        print(f"generated {args.reviews:,} reviews in {time.perf_counter() - t0:.0f}s -> {folder}", flush=True)
    return folder


def rows(counts: dict) -> int:
    """The row counts of a stage record's "read" or "wrote" (ingest's line counts are one level down; file
    counts, publish's count of users and paths are not rows)."""
    if isinstance(counts.get("lines"), dict):
        counts = counts["lines"]
    return sum(v for k, v in counts.items() if isinstance(v, int) and k not in ("files", "users"))


def gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def run_stage(stage: str, args: list[str], log) -> tuple[float, int, dict, dict]:
    """Run ``recjob <stage> <args>`` as its own process, its output into ``log``: (wall seconds, exit code, the
    stage's record from its "done" line, the peak memory of its process tree per kind, as ``Sampler.peak``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(RECJOB), stage, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    record = {}
    with Sampler(proc.pid) as mem:
        for line in proc.stdout:
            log.write(line)
            m = DONE.search(line.rstrip("\n"))
            if m and m.group(1) == stage:
                record = json.loads(m.group(2))
        rc = proc.wait()
    return time.perf_counter() - t0, rc, record, mem.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=0, help="0: reviews / 2.3 (Movies_and_TV's ratio)")
    p.add_argument("--items", type=int, default=0, help="0: reviews / 48")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--config", choices=CONFIGS, default="unsampled")
    p.add_argument("--driver-memory", default="9g",
                   help="spark.driver.memory (local mode: the executors too); with 10g one ingest of four grew "
                        "the JVM to 11.79 GiB resident (its heap full + 1.8 GiB), 12.27 with Python: 9g leaves "
                        "room under 12")
    p.add_argument("--cache", default=str(ROOT / "bench" / ".data"))
    p.add_argument("--work", default="", help="data_dir of the run (default: a folder beside the cached data)")
    p.add_argument("--set", action="append", default=[], help="more recjob settings, key=value")
    p.add_argument("--stages", nargs="*", default=list(STAGES))
    args = p.parse_args()
    data = data_for(args)
    work = Path(args.work or f"{data}-run-{args.config}")
    ds = "2026-01-04"
    common = ["--ds", ds, "--set", f"data_dir={work}", "--set", f"input.reviews={data}/reviews.json.gz",
              "--set", f"input.metadata={data}/meta.json.gz", "--set", f"spark.conf.spark.driver.memory={args.driver_memory}"]
    for item in CONFIGS[args.config] + args.set:
        common += ["--set", item]
    print(f"{args.config}: {args.reviews:,} reviews from {data}; data_dir {work}", flush=True)
    print(f"{'stage':9s} {'wall s':>8s} {'rows in':>12s} {'rows out':>12s} {'driver GiB':>10s} {'JVM GiB':>8s} "
          f"{'workers GiB':>11s} {'sum GiB':>8s} {'anon GiB':>8s}", flush=True)
    total, peak, peak_anon = 0.0, 0, 0
    log_path = work.with_suffix(".log")
    work.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:  # line-buffered: readable while a stage runs
        for stage in args.stages:
            wall, rc, record, mem = run_stage(stage, common, log)
            total += wall
            peak, peak_anon = max(peak, mem["total"]), max(peak_anon, mem["anon"])
            rows_in, rows_out = rows(record.get("read", {})), rows(record.get("wrote", {}))
            print(f"{stage:9s} {wall:8.1f} {rows_in:12,d} {rows_out:12,d} {gib(mem['driver']):>10s} "
                  f"{gib(mem['jvm']):>8s} {gib(mem['workers']):>11s} {gib(mem['total']):>8s} "
                  f"{gib(mem['anon']):>8s}", flush=True)
            if rc != 0:
                print(f"{stage} failed (exit {rc}); its log: {log_path}", flush=True)
                sys.exit(rc)
    print(f"total {total:.0f}s ({total / 60:.1f} min), peak RSS {gib(peak)} GiB (anonymous {gib(peak_anon)} GiB); "
          f"stage logs in {log_path}")


if __name__ == "__main__":
    with recorded("pipeline"):
        main()
