"""The ``recjob`` command: generate data, run the pipeline or one stage, show recommendations."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys

from recjob import config as C
from recjob.stages import ORDER

log = logging.getLogger("recjob")

# Exit codes, so that a scheduler can tell a failure worth retrying from one that a retry cannot change
# (dags/recjob_amazon_movies.py does not retry EXIT_NO_RETRY; keep its copy equal, a test checks).
EXIT_FAILED = 1  # anything else: worth a retry (a lost executor, a full disk, a missing input not there yet)
EXIT_CONFIG = 2  # bad configuration or arguments, refused before Spark starts
EXIT_INPUT_REFUSED = 3  # unreadable input file, too many invalid lines, no valid review
EXIT_GATE_REFUSED = 4  # the quality gate (or the list checks) refused the model: nothing published
EXIT_BUSY = 5  # another live run holds this ds: retry later
EXIT_NO_RETRY = (EXIT_CONFIG, EXIT_INPUT_REFUSED, EXIT_GATE_REFUSED)


def exit_code(exc: BaseException) -> int:
    from recjob import locks
    from recjob.stages import ingest, publish

    if isinstance(exc, C.ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, ingest.InputRefused):
        return EXIT_INPUT_REFUSED
    if isinstance(exc, (publish.GateFailed, publish.ChecksFailed)):
        return EXIT_GATE_REFUSED
    if isinstance(exc, locks.Busy):
        return EXIT_BUSY
    return EXIT_FAILED


def _ds(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ds {value!r} is not a date YYYY-MM-DD") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", help="YAML config file (default: built-in defaults, as conf/local.yaml)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.factors=64 (repeatable)")
    with_ds = argparse.ArgumentParser(add_help=False, parents=[common])
    with_ds.add_argument("--ds", required=True, type=_ds, help="run date YYYY-MM-DD (the partition written)")

    p = argparse.ArgumentParser(prog="recjob", description="Batch recommendations on Spark: "
                                "ingest -> sample -> ids -> shards -> train -> score -> publish")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", parents=[common], help="write synthetic Amazon-format reviews and metadata")
    g.add_argument("--reviews", type=int, default=DEMO_REVIEWS, help=f"number of reviews (default {DEMO_REVIEWS:,})")
    g.add_argument("--users", type=int, default=0, help="number of users (default: derived from --reviews)")
    g.add_argument("--items", type=int, default=0, help="number of items (default: derived from --reviews)")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--out", help="folder (default: data_dir/raw, where input.* point by default)")
    sub.add_parser("models", help="print the model kinds of the registry (train.model) as a Markdown table")
    sub.add_parser("spark-conf", parents=[common],
                   help="print the Spark settings of this config as a properties file (spark-submit "
                        "--properties-file), secrets included: write it to a file only you can read")
    r = sub.add_parser("run", parents=[with_ds], help="run the stages in order")
    r.add_argument("--from", dest="first", choices=ORDER, default=ORDER[0])
    r.add_argument("--to", dest="last", choices=ORDER, default=ORDER[-1])
    for name in ORDER:
        sub.add_parser(name, parents=[with_ds], help=f"run the {name} stage alone")
    s = sub.add_parser("show", parents=[with_ds], help="print a few users' recommendations from the warehouse")
    s.add_argument("--users", type=int, default=3)
    q = sub.add_parser("sql", parents=[common], help="run a SQL query on the warehouse, print tab-separated rows")
    q.add_argument("query", help="e.g. \"SELECT * FROM recjob.recommendations WHERE ds = '2026-01-04' LIMIT 20\"")
    d = sub.add_parser("demo", parents=[common], help="generate data if missing, run everything, show results")
    d.add_argument("--ds", type=_ds, default=dt.date.today().isoformat())
    d.add_argument("--users", type=int, default=3)
    return p


DEMO_REVIEWS = 300_000  # about a minute of pipeline on 2 cores


def generate(cfg: C.Config, out: str, reviews: int = DEMO_REVIEWS, users: int = 0, items: int = 0,
             seed: int = 7) -> dict:
    """Synthetic reviews and metadata under ``out``, named as the config's input files."""
    from recjob import datagen

    return datagen.generate(out, reviews, users, items, seed=seed, reviews_name=os.path.basename(cfg.input.reviews),
                            meta_name=os.path.basename(cfg.input.metadata or "meta.json.gz"))


def show(cfg: C.Config, spark, ds: str, users: int) -> str:
    """A few users' top-N from the published table, as text (read back by table name)."""
    from pyspark.sql import functions as F

    table = cfg.table("recommendations")
    recs = spark.table(table).where(F.col("ds") == ds)
    picked = recs.select("reviewerID").distinct().orderBy("reviewerID").limit(users)
    rows = recs.join(picked, "reviewerID").orderBy("reviewerID", "rank").collect()
    total = recs.count()
    n_users = recs.select("reviewerID").distinct().count()
    lines = [f"{table} ds={ds}: {total} rows for {n_users} users. First {users} users:"]
    current = None
    for row in rows:
        if row["reviewerID"] != current:
            current = row["reviewerID"]
            lines.append(f"\n  user {current}")
        lines.append(f"    {row['rank']:>2}. {row['asin']}  {row['score']:.2f}  {row['title'] or '(no title)'}")
    lines.append(f"\nQuery it: SELECT * FROM {table} WHERE ds = '{ds}' ORDER BY reviewerID, rank")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for noisy in ("petastorm", "py4j"):  # per-reader metadata chatter; recjob logs what it reads
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "models":
        from recjob import models

        print(models.markdown_table())
        return 0
    try:
        cfg = C.load(args.conf, args.set)
        if args.command == "spark-conf":
            from recjob import session

            for key, value in session.spark_conf(cfg).items():
                print(f"{key} {value}")
            return 0
        if args.command == "generate":
            generate(cfg, args.out or os.path.dirname(cfg.path(cfg.input.reviews)), args.reviews, args.users,
                     args.items, args.seed)
            return 0
        from recjob import locks, pipeline
        from recjob import session

        @contextlib.contextmanager
        def locked(spark):  # one run per ds at a time: a lock file under data_dir, and one in the metastore's DB
            what = f"recjob {args.command}"
            with locks.ds_lock(spark, cfg.path("locks"), args.ds, what), \
                    locks.metastore_lock(spark, dict(cfg.spark.conf), cfg.database, args.ds, what):
                yield

        if args.command == "demo":
            if not os.path.exists(cfg.path(cfg.input.reviews)):
                generate(cfg, os.path.dirname(cfg.path(cfg.input.reviews)))
            spark = session.session(cfg)
            with locked(spark):
                pipeline.run(cfg, spark, args.ds)
            print(show(cfg, spark, args.ds, args.users))
            return 0
        spark = session.session(cfg)
        if args.command == "run":
            with locked(spark):
                pipeline.run(cfg, spark, args.ds, args.first, args.last)
        elif args.command == "sql":
            result = spark.sql(args.query)
            print("\t".join(result.columns))
            for row in result.toLocalIterator():
                print("\t".join("" if v is None else str(v) for v in row))
        elif args.command == "show":
            print(show(cfg, spark, args.ds, args.users))
        else:
            with locked(spark):
                pipeline.run_stage(args.command, cfg, spark, args.ds)
        return 0
    except C.ConfigError as exc:
        print(f"recjob: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # one line for Airflow's task log, the traceback above it (not for refusals)
        code = exit_code(exc)
        if code == EXIT_FAILED:
            log.exception("recjob %s failed", args.command)
        print(f"recjob: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
