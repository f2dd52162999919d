"""A daily schedule on data shaped like Movies_and_TV: day 1 is the whole history up to that day, days 2..N
each add one day's file, and every day runs every stage for its ds, one ``recjob <stage>`` process each (as the
DAG runs them), with the default retention and champion gate (``--set train.warm_start=true`` for warm starts). A day whose
model the gate refuses publishes nothing and the schedule goes on.

Per day and stage: wall time and peak resident memory of the process tree (bench/pipeline.py's sampler); per
day: the bytes under data_dir (tables, shards, models, copies) and test NDCG@10 with its standard error (the
evaluate stage's record). Day 2 also trains, scores and evaluates from a fresh start first
(``train.warm_start=false``), so its warm train stage and figures stand beside the cold ones, measured in the
same run; the warm run is the one that goes on to publish.

Data: ``recjob generate`` output (bench/pipeline.py's cache), split by review date into one file per day for
the last N-1 days and one file for everything before; the files arrive in ``<work>/incoming/`` one day at a
time. Each day ingests only its own file (``input.incremental``, ``input.reviews`` =
``incoming/reviews-{ds}.json.gz``; day 1's file is the whole history before day 2) and the later stages read
every day's reviews up to it; ``--whole-dump`` instead reads every file that has arrived each day.

    python bench/daily.py --reviews 300000
    python bench/daily.py --reviews 8765568 --users 3826085 --items 182032
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import shutil
import sys
from pathlib import Path

import pipeline  # bench/ is on the path: scripts run from it
from pipeline import data_for, gib
from results_entry import recorded

from recjob.names import STAGES

TIME = re.compile(rb'"unixReviewTime":\s*(\d+)')
MODEL_STAGES = ("train", "score", "evaluate")


def split_by_day(reviews: Path, out: Path, days: int) -> list[tuple[str, Path]]:
    """[(ds, file)]: the last ``days - 1`` calendar days (UTC) of ``reviews`` one file each, and everything
    before them in the first; cached in ``out``."""
    index = out / "days.json"
    if index.exists():
        return [(ds, out / name) for ds, name in json.loads(index.read_text())]
    out.mkdir(parents=True, exist_ok=True)
    last = 0
    with gzip.open(reviews, "rb") as fh:
        for line in fh:
            found = TIME.search(line)
            if found:
                last = max(last, int(found.group(1)))
    end = dt.datetime.fromtimestamp(last, dt.timezone.utc).date()
    dates = [end - dt.timedelta(days=days - 1 - i) for i in range(days)]  # day 1 = the day before day 2
    bounds = [int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()) for d in dates[1:]]
    names = [f"reviews-{d}.json.gz" for d in dates]
    sinks = [gzip.open(out / n, "wb", compresslevel=1) for n in names]
    with gzip.open(reviews, "rb") as fh:
        for line in fh:
            found = TIME.search(line)
            t = int(found.group(1)) if found else 0
            day = sum(t >= b for b in bounds)  # 0: before day 2
            sinks[day].write(line)
    for s in sinks:
        s.close()
    pairs = [(str(d), n) for d, n in zip(dates, names)]
    index.write_text(json.dumps(pairs))
    return [(ds, out / name) for ds, name in pairs]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stage(stage: str, ds: str, common: list[str], extra: list[str], log) -> tuple[float, int, dict]:
    """Run ``recjob <stage>`` for ds: (wall seconds, peak RSS of its process tree, its stage record); a refused
    publish is recorded and the schedule goes on, any other failure stops the bench."""
    wall, rc, record, peak = pipeline.run_stage(stage, ["--ds", ds, *common, *extra], log)
    if rc == 4 and stage == "publish":  # the gate refused the day's model: a schedule goes on with its champion
        print(f"publish ds={ds} refused by the quality gate (exit 4): nothing published that day; the reason is "
              f"in {log.name}", flush=True)
        return wall, peak["total"], {"refused": True}
    if rc != 0:
        print(f"{stage} ds={ds} failed (exit {rc}); its log: {log.name}", flush=True)
        sys.exit(rc)
    return wall, peak["total"], record


def test_ndcg(record: dict) -> str:
    m = record.get("metrics", {}).get("test", {}).get("model", {})
    return f"{m['ndcg@10']:.4f} ({m['ndcg@10_se']:.4f})" if "ndcg@10" in m else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=300_000)
    p.add_argument("--users", type=int, default=0, help="0: reviews / 2.3 (Movies_and_TV's ratio)")
    p.add_argument("--items", type=int, default=0, help="0: reviews / 48")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=5)
    p.add_argument("--driver-memory", default="9g", help="spark.driver.memory (as bench/pipeline.py)")
    p.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".data"))
    p.add_argument("--whole-dump", action="store_true",
                   help="every day reads every file that has arrived (input.incremental=false)")
    p.add_argument("--set", action="append", default=[], help="more recjob settings, key=value")
    args = p.parse_args()
    data = data_for(args)
    days = split_by_day(data / "reviews.json.gz", Path(f"{data}-daily{args.days}"), args.days)
    work = Path(f"{data}-daily{args.days}-run")
    shutil.rmtree(work, ignore_errors=True)
    incoming = work / "incoming"
    incoming.mkdir(parents=True)
    reviews = f"{incoming}/reviews-*.json.gz" if args.whole_dump else f"{incoming}/reviews-{{ds}}.json.gz"
    common = ["--set", f"data_dir={work}", "--set", f"input.reviews={reviews}",
              "--set", f"input.incremental={str(not args.whole_dump).lower()}",
              "--set", f"input.metadata={data}/meta.json.gz", "--set", f"spark.conf.spark.driver.memory={args.driver_memory}",
              "--set", "sample.start=1990-01-01", "--set", "sample.end=2100-01-01"]
    for item in args.set:
        common += ["--set", item]
    print(f"{args.days} days from {data}: day 1 = everything before {days[1][0]}, then one file a day, "
          f"{'every file read each day' if args.whole_dump else 'each day ingesting its own file'}; "
          f"data_dir {work}", flush=True)
    print(f"{'day':>3s} {'ds':10s} {'stage':15s} {'wall s':>8s} {'peak GiB':>8s}", flush=True)
    summary = []
    with open(work.with_suffix(".log"), "w", buffering=1) as log:
        for day, (ds, path) in enumerate(days, start=1):
            shutil.copy(path, incoming / path.name)  # the day's file arrives
            walls, peaks, figures = {}, {}, "-"
            for stage in STAGES:
                if day == 2 and stage == MODEL_STAGES[0]:  # the same model stages from a fresh start first
                    for cold in MODEL_STAGES:
                        wall, peak, record = run_stage(cold, ds, common, ["--set", "train.warm_start=false"], log)
                        walls[f"{cold} (cold)"] = wall
                        print(f"{day:3d} {ds:10s} {cold + ' (cold)':15s} {wall:8.1f} {gib(peak):>8s}", flush=True)
                        if cold == "evaluate":
                            print(f"    day 2 from a fresh start: test NDCG@10 {test_ndcg(record)}", flush=True)
                wall, peak, record = run_stage(stage, ds, common, [], log)
                walls[stage], peaks[stage] = wall, peak
                if stage == "train":
                    print(f"    warm start: {record.get('result', {}).get('warm_start')}", flush=True)
                if stage == "evaluate":
                    figures = test_ndcg(record)
                print(f"{day:3d} {ds:10s} {stage:15s} {wall:8.1f} {gib(peak):>8s}", flush=True)
            total = sum(w for s, w in walls.items() if "(cold)" not in s)
            stored = folder_bytes(work) - folder_bytes(incoming)
            summary.append((day, ds, total, max(peaks.values()), stored, figures, walls))
    print(f"\n{'day':>3s} {'ds':10s} {'run min':>8s} {'peak GiB':>8s} {'data_dir GiB':>12s} {'train s':>8s} "
          f"{'test NDCG@10 (SE)':>18s}")
    for day, ds, total, peak, stored, figures, walls in summary:
        print(f"{day:3d} {ds:10s} {total / 60:8.1f} {gib(peak):>8s} {gib(stored):>12s} {walls['train']:8.1f} "
              f"{figures:>18s}")
    d1, d2 = summary[0], summary[1]
    print(f"day 2 train warm {d2[6]['train']:.1f}s / cold {d2[6]['train (cold)']:.1f}s = "
          f"{d2[6]['train'] / d2[6]['train (cold)']:.2f} (target <= 0.40)")
    later = [s[2] for s in summary[1:]]
    print(f"later days' run / day 1's: {', '.join(f'{t / d1[2]:.2f}' for t in later)} (target <= 0.50)")
    print(f"data_dir after day {summary[-1][0]} / after day 1: {summary[-1][4] / max(d1[4], 1):.2f} (target <= 3)")


if __name__ == "__main__":
    with recorded("daily"):
        main()
