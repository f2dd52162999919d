"""The ``recjob`` command: generate data, run the pipeline or one stage, show recommendations."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import threading

from recjob import config as C
from recjob.names import (EXIT_BUSY, EXIT_CONFIG, EXIT_DENIED, EXIT_FAILED, EXIT_GATE_REFUSED,  # noqa: F401
                          EXIT_INPUT_REFUSED, EXIT_MEANING, EXIT_NO_RETRY)
from recjob.names import STAGES as ORDER
from recjob.names import Table

log = logging.getLogger("recjob")

class Terminated(Exception):
    """SIGTERM reached the command: it stops, releasing its locks and its JVM on the way out (worth a retry)."""


def _on_sigterm(signum, frame) -> None:  # noqa: ANN001 (signal's signature)
    raise Terminated(f"stopped by signal {signum} (SIGTERM)")


def exit_code(exc: BaseException) -> int:
    from recjob import errors, locks
    from recjob.stages import ingest, publish

    if isinstance(exc, ingest.InputRefused):
        return EXIT_INPUT_REFUSED
    if isinstance(exc, (publish.GateFailed, publish.ChecksFailed)):
        return EXIT_GATE_REFUSED
    if isinstance(exc, locks.Busy):
        return EXIT_BUSY
    if errors.is_denied(exc):
        return EXIT_DENIED
    return EXIT_FAILED


def _ds(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ds {value!r} is not a date YYYY-MM-DD") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", help="YAML config file (default: the built-in defaults, `recjob config`)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.factors=64 (repeatable)")
    with_ds = argparse.ArgumentParser(add_help=False, parents=[common])
    with_ds.add_argument("--ds", required=True, type=_ds, help="run date YYYY-MM-DD (the partition written)")

    p = argparse.ArgumentParser(prog="recjob", description="Batch recommendations on Spark: "
                                " -> ".join(ORDER))
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", parents=[common], help="write synthetic Amazon-format reviews and metadata")
    g.add_argument("--reviews", type=int, default=DEMO_REVIEWS, help=f"number of reviews (default {DEMO_REVIEWS:,})")
    g.add_argument("--users", type=int, default=0, help="number of users (default: derived from --reviews)")
    g.add_argument("--items", type=int, default=0, help="number of items (default: derived from --reviews)")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--out", help="folder (default: data_dir/raw, where input.* point by default)")
    sub.add_parser("models", help="print the model kinds of the registry (train.model) as a Markdown table")
    st = sub.add_parser("settings", help="print every setting with its default and meaning (docs/configuration.md)")
    st.add_argument("--sections", action="store_true", help="only the table of sections (README.md)")
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
    w = sub.add_parser("web", parents=[common], help="serve the pages of the published runs (read-only, no Spark)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=WEB_PORT)
    d = sub.add_parser("demo", parents=[common], help="generate data if missing, run everything, show results")
    d.add_argument("--ds", type=_ds, default=dt.date.today().isoformat())
    d.add_argument("--users", type=int, default=3)
    return p


DEMO_REVIEWS = 300_000  # a few minutes of pipeline on 2 cores
WEB_PORT = 8080


def generate(cfg: C.Config, out: str, reviews: int = DEMO_REVIEWS, users: int = 0, items: int = 0,
             seed: int = 7) -> dict:
    """Synthetic reviews and metadata under ``out``, named as the config's input files."""
    from recjob import datagen

    return datagen.generate(out, reviews, users, items, seed=seed, reviews_name=os.path.basename(cfg.input.reviews),
                            meta_name=os.path.basename(cfg.input.metadata or "meta.json.gz"))


def show(cfg: C.Config, spark, ds: str, users: int) -> str:
    """A few users' top-N from the published table, as text (read back by table name)."""
    from pyspark.sql import functions as F

    table = cfg.table(Table.RECOMMENDATIONS)
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


def web(cfg: C.Config, host: str, port: int) -> int:
    """Serve the pages until stopped (Ctrl-C or SIGTERM); the published index is read as it changes."""
    from werkzeug.serving import run_simple

    from recjob.web.app import create_app

    app = create_app(cfg.path(""))
    print(f"recjob web: the published runs of {cfg.path('')} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    run_simple(host, port, app, threaded=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code. SIGTERM (from the main thread) stops it with its locks released."""
    args = _parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _write_result(args.command, code)
    return code


RESULT_FILE_ENV = "RECJOB_RESULT_FILE"


def _write_result(command: str, code: int) -> None:
    """When ``RECJOB_RESULT_FILE`` names a file, leave the exit code there as JSON: the DAG's operator reads it to
    tell a refusal (not retried) from a failure worth a retry, whatever spark-submit makes of the code."""
    path = os.environ.get(RESULT_FILE_ENV)
    if path:
        import json

        try:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"command": command, "exit": code, "meaning": EXIT_MEANING.get(code, "done")}, fh)
        except OSError as exc:
            log.warning("could not write the result file %s: %s", path, exc)


def console(argv: list[str] | None = None) -> None:
    """The ``recjob`` command: ``main``, then this process's JVM stopped and waited for, so that a command run
    right after it finds the embedded metastore free."""
    code = main(argv)
    try:
        from recjob import session

        session.stop_jvm()
    except Terminated:
        code = EXIT_FAILED
    sys.exit(code)


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for noisy in ("petastorm", "py4j"):  # per-reader metadata chatter; recjob logs what it reads
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "models":
        from recjob import models

        print(models.markdown_table())
        return 0
    if args.command == "settings":
        from recjob.config import reference

        print(reference.sections_table() if args.sections else reference.full_reference(), end="\n")
        return 0
    try:
        cfg = C.load(args.conf, args.set)
        if args.command == "spark-conf":
            from recjob import session

            for key, value in session.spark_conf(cfg).items():
                print(f"{key} {value}")
            return 0
        if args.command == "web":
            return web(cfg, args.host, args.port)
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
            print(f"\nThe run's page: start `recjob web{' --conf ' + args.conf if args.conf else ''}` (or `make web`) "
                  f"and open http://127.0.0.1:{WEB_PORT}/run/{args.ds}")
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
        from recjob import errors

        code = exit_code(exc)
        if code in (EXIT_FAILED, EXIT_DENIED) and not isinstance(exc, Terminated):
            log.exception("recjob %s failed", args.command)
        if getattr(exc, "java_exception", None) is not None:  # the Java call's name says nothing: its root cause
            reason = f"{type(exc).__name__}: {errors.root_cause(exc)}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        retry = "not retried: fix it, then rerun" if code in EXIT_NO_RETRY else "a retry may help"
        print(f"recjob: {args.command} failed: {reason} (exit {code}: {retry})", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
