"""Recommendation quality of the model against its baselines, per dataset, measured in the same run.

    python bench/quality.py                       # every dataset found in ../shared/data
    python bench/quality.py --datasets ml100k-strat amazon-All_Beauty

Each dataset runs the real pipeline (ingest .. evaluate) with the same code and defaults; only the input,
the split protocol and the model kind that protocol asks for differ: the RMSE protocols use train.model=bpmf
(the best rating model), the random top-N protocol the default ranking model (softmax), the leave-last-out
protocols train.model=seq (the next-item model: the held-out item is the one that came after the others).
Prints, per dataset, the test metrics of the model and of the baselines evaluated on the same split, and the
ratios the targets are stated in.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DS = "2000-01-01"
ALL_TIME = ["sample.start=1990-01-01", "sample.end=2030-01-01", "sample.min_user_reviews=1",
            "sample.min_item_reviews=1"]


def datasets() -> dict[str, list[str]]:
    ml = DATA / "movielens" / "ml-100k"
    out: dict[str, list[str]] = {}
    for fold in range(1, 6):
        out[f"ml100k-u{fold}"] = ["input.format=movielens", f"input.reviews={ml}/u{fold}.base.gz",
                                  f"input.test={ml}/u{fold}.test", f"input.metadata={ml}/u.item",
                                  "shards.split=given", "train.model=bpmf", *ALL_TIME]
    out["ml100k-strat"] = ["input.format=movielens", f"input.reviews={ml}/u.data.gz", f"input.metadata={ml}/u.item",
                           "shards.split=stratified", "shards.test_fraction=0.25", *ALL_TIME]
    # leave-last-out on ML-100k: the ranking protocol of the sequence-aware literature (SASRec, Fossil)
    out["ml100k-temporal"] = ["input.format=movielens", f"input.reviews={ml}/u.data.gz",
                              f"input.metadata={ml}/u.item", "shards.split=temporal", "train.model=seq", *ALL_TIME]
    for name in ("AMAZON_FASHION", "All_Beauty", "Gift_Cards"):
        out[f"amazon-{name}"] = [f"input.reviews={DATA}/amazon2018/{name}_5.json.gz", "input.metadata=",
                                 "shards.split=temporal", "train.model=seq", *ALL_TIME]
    return out


def read_eval(spark, cfg, split: str = "test") -> dict:
    from pyspark.sql import functions as F

    rows = spark.table(cfg.table("evaluation")).where((F.col("ds") == DS) & (F.col("split") == split)).collect()
    out: dict = {}
    for r in rows:
        out.setdefault(r["model"], {})[r["metric"]] = r["value"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", help="names (default: all whose files exist)")
    parser.add_argument("--set", action="append", default=[], help="extra config override for every dataset")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not DATA.exists():
        print(f"bench/quality.py: the real datasets are not at {DATA} (../shared/data beside the project): nothing to measure")
        return 0
    from recjob import config, pipeline
    from recjob import session

    chosen = {k: v for k, v in datasets().items() if not args.datasets or k in args.datasets}
    root = Path(tempfile.mkdtemp(prefix="recjob-quality-"))
    spark = session.session(config.load(None, [f"data_dir={root}", "spark.conf.spark.sql.shuffle.partitions=4",
                                               "spark.conf.spark.ui.enabled=false"]))
    results = {}
    for name, overrides in chosen.items():
        cfg = config.load(None, [f"data_dir={root / name}", f"database=q_{name.replace('-', '_').lower()}",
                                 *overrides, *args.set])
        t0 = time.monotonic()
        pipeline.run(cfg, spark, DS, last="evaluate")
        results[name] = (read_eval(spark, cfg), cfg.train.model, time.monotonic() - t0)
        report(name, *results[name])
    summary(results)
    return 0


def report(name: str, ev: dict, kind: str, seconds: float) -> None:
    print(f"\n== {name} (model: {kind}, test split, {seconds:.0f}s)")
    metrics = ["rmse", "mae", "ndcg@10", "precision@10", "recall@10", "hr@10", "map@10", "coverage"]
    print(f"{'':14s}" + "".join(f"{m:>13s}" for m in metrics))
    for model in ("model", "global_mean", "bias", "als", "popularity", "als_implicit"):
        if model in ev:
            cells = "".join(f"{ev[model][m]:13.4f}" if m in ev[model] else f"{'':13s}" for m in metrics)
            print(f"{model:14s}{cells}")
    if "ndcg@10" in ev.get("model", {}):
        print("model / best of (popularity, als_implicit): " +
              ", ".join(f"{m} {r:.2f}x" if r is not None else f"{m} n/a" for m, r in vs_best(ev, ("hr@10", "ndcg@10"))))


def vs_best(ev: dict, metrics: tuple) -> list:
    """(metric, the model's value / the better of popularity and ALS implicit, None when both are 0)."""
    best = {m: max(ev["popularity"][m], ev["als_implicit"][m]) for m in metrics}
    return [(m, ev["model"][m] / best[m] if best[m] else None) for m in metrics]


def summary(results: dict) -> None:
    folds = [v[0] for k, v in results.items() if k.startswith("ml100k-u")]
    if folds:
        mean = lambda who: sum(f[who]["rmse"] for f in folds) / len(folds)  # noqa: E731
        print(f"\nML-100k u1..u{len(folds)} mean test RMSE: model {mean('model'):.4f}, ALS {mean('als'):.4f}, "
              f"bias {mean('bias'):.4f}, global mean {mean('global_mean'):.4f} (target <= 0.900)")
    if "ml100k-strat" in results:
        ev = results["ml100k-strat"][0]["model"]
        print(f"ML-100k 75/25 stratified: NDCG@10 {ev['ndcg@10']:.4f} (target >= 0.42), "
              f"Precision@10 {ev['precision@10']:.4f} (target >= 0.37)")
    for name, (ev, kind, _) in results.items():
        if name == "ml100k-temporal" or name.startswith("amazon-"):
            print(f"{name} leave-last-out ({kind}): " + ", ".join(
                f"{m} {ev['model'][m]:.4f} = {r:.2f}x the best of popularity and ALS implicit"
                if r is not None else f"{m} n/a" for m, r in vs_best(ev, ("ndcg@10", "hr@10"))) + " (target 1.2x)")


if __name__ == "__main__":
    sys.exit(main())
