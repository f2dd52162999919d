"""One run per ds at a time: a lock file per run date under data_dir, on any Hadoop filesystem.

Two runs of the same ds (or of stages of it) would overwrite each other's partitions and artefacts. The first
takes ``locks/ds=<ds>.lock`` (created only if absent) and writes who holds it; a second is refused at once with
that holder. The holder touches the file every ``HEARTBEAT_S`` seconds. A lock is stale, and is taken over,
when its holder is a process of this host that is gone, or when it was not touched for ``STALE_AFTER_S``
(a holder on another host that was killed). On object stores without an atomic create-if-absent (S3) two runs
that start within the same instant may both get the lock; use the scheduler's ``max_active_runs`` there.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Callable, Iterator

from pyspark.sql import SparkSession

from recjob import warehouse

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


class Busy(RuntimeError):
    """Another live run holds this ds: try again when it has finished."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _stale(holder: dict, age_s: float, stale_after_s: float) -> str | None:
    """Why a lock may be taken over, or None while its holder may still be running."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
            and not _alive(holder["pid"]):
        return f"its holder (pid {holder['pid']} on this host) is gone"
    if age_s > stale_after_s:
        return f"it was not refreshed for {age_s:.0f}s (> {stale_after_s:.0f}s)"
    return None


@contextlib.contextmanager
def ds_lock(spark: SparkSession, lock_dir: str, ds: str, what: str,
            stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S) -> Iterator[str]:
    """Hold the lock of ``ds`` while the block runs; ``Busy`` at once when a live run holds it."""
    path = f"{lock_dir.rstrip('/')}/ds={ds}.lock"
    fs, hpath = warehouse.hadoop_fs(spark, path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
          "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(2):
        if fs.createNewFile(hpath):
            break
        try:
            holder = json.loads(warehouse.read_text(spark, path) or "{}")
            age = time.time() - fs.getFileStatus(hpath).getModificationTime() / 1000.0
        except Exception:  # noqa: BLE001 (removed or half-written meanwhile: look again)
            holder, age = {}, 0.0
        why = _stale(holder, age, stale_after_s) if holder else None
        if holder and why is None:
            raise Busy(f"ds={ds} is being run by {holder.get('what', '?')} (pid {holder.get('pid')} on "
                       f"{holder.get('host')}, since {holder.get('since')}); lock {path}. Wait for it to finish; "
                       f"a lock not refreshed for {stale_after_s:.0f}s is taken over")
        if holder:
            log.warning("taking over the lock of ds=%s from %s: %s", ds, holder, why)
            fs.delete(hpath, False)
        else:
            time.sleep(0.2)  # its creator is writing it: give it a moment
    else:
        raise Busy(f"ds={ds}: could not take the lock {path}")
    warehouse.write_text(spark, path, json.dumps(me))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                fs.setTimes(hpath, int(time.time() * 1000), -1)
            except Exception:  # noqa: BLE001 (the JVM is stopping; the lock goes with the run)
                return

    thread = threading.Thread(target=beat, name=f"lock-ds={ds}", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            fs.delete(hpath, False)
        except Exception:  # noqa: BLE001
            log.warning("could not remove the lock %s: the next run takes it over once stale", path)


class LockLost(Busy):
    """The run's metastore lock went with its connection (PostgreSQL restarted) and another run holds it now."""


def _try_advisory_lock(conn, name: str) -> bool:  # noqa: ANN001 (a java.sql.Connection through py4j)
    query = conn.prepareStatement("SELECT pg_try_advisory_lock(hashtext(?))")
    query.setString(1, name)
    result = query.executeQuery()
    result.next()
    return bool(result.getBoolean(1))


def _advisory_holder(conn, label: str) -> str:  # noqa: ANN001
    holders = conn.prepareStatement("SELECT application_name, backend_start FROM pg_stat_activity "
                                    "WHERE application_name LIKE ? AND pid <> pg_backend_pid()")
    holders.setString(1, label + ":%")
    found = holders.executeQuery()
    if not found.next():
        return "another run"
    return found.getString(1).split(": ", 1)[-1] + " (since " + str(found.getTimestamp(2)) + ")"


def _close(conn) -> None:  # noqa: ANN001
    try:
        conn.close()
    except Exception:  # noqa: BLE001 (already broken: nothing to release)
        pass


def _stop_main_thread() -> None:
    """A real SIGINT: it interrupts the main thread even inside a blocking call into the JVM."""
    os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def metastore_lock(spark: SparkSession | None, conf: dict, database: str, ds: str, what: str,
                   heartbeat_s: float = HEARTBEAT_S, connect: Callable[[str], object] | None = None,
                   stop_run: Callable[[], None] = _stop_main_thread) -> Iterator[str | None]:
    """With the metastore on PostgreSQL, also hold a session advisory lock on (database, ds) in the metastore's
    database while the block runs: two runs of one ds that share the catalog but not data_dir (and so not the
    lock file) are refused too. PostgreSQL releases it when the connection ends, so a killed run frees it at once.

    The connection is checked every ``heartbeat_s``. When it is gone (PostgreSQL restarted: the lock with it)
    the lock is taken again on a new connection as soon as the database answers; if another run took it
    meanwhile, the run is stopped (``LockLost``, exit 5) rather than carrying on beside that run.
    ``conf``: the resolved Spark settings (javax.jdo connection URL, user, password); ``connect``: opens a
    java.sql.Connection given its application name (tests). Yields the lock's name."""
    url = conf.get("spark.hadoop.javax.jdo.option.ConnectionURL", "")
    if not url.startswith("jdbc:postgresql:"):
        yield None
        return
    name = f"recjob {database} ds={ds}"
    label = f"{database} ds={ds}"  # PostgreSQL keeps 63 bytes of an application name: the holder, briefly
    if connect is None:
        def connect(application_name: str):  # noqa: ANN202
            return warehouse.jdbc_connection(
                spark, url, conf.get("spark.hadoop.javax.jdo.option.ConnectionUserName", ""),
                conf.get("spark.hadoop.javax.jdo.option.ConnectionPassword", ""), application_name)
    app = f"{label}: {what}, pid {os.getpid()}@{socket.gethostname()}"[:63]
    state: dict = {"conn": connect(app), "lost": None}
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(heartbeat_s):
            try:
                if state["conn"].isValid(10):
                    continue
            except Exception:  # noqa: BLE001 (a broken connection may raise rather than answer False)
                pass
            log.warning("the metastore connection holding the lock %r is gone (was PostgreSQL restarted?): "
                        "taking the lock again", name)
            try:
                conn = connect(app)
            except Exception as exc:  # noqa: BLE001 (the database is still down: try again at the next beat)
                log.warning("cannot reach the metastore database to take the lock %r again (%s); retrying in %.0fs",
                            name, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, heartbeat_s)
                continue
            if _try_advisory_lock(conn, name):
                _close(state["conn"])
                state["conn"] = conn
                log.warning("took the metastore lock %r again", name)
                continue
            state["lost"] = (f"ds={ds} of database {database}: this run's metastore lock went with its connection "
                             f"and {_advisory_holder(conn, label)} holds it now; this run stops so as not to write "
                             f"beside it")
            _close(conn)
            log.error("%s", state["lost"])
            if not stop.is_set():
                stop_run()
            return

    try:
        if not _try_advisory_lock(state["conn"], name):
            raise Busy(f"ds={ds} of database {database} is being run by {_advisory_holder(state['conn'], label)} "
                       f"(a lock in the metastore database); wait for it to finish: the lock goes with its connection")
        log.info("holding the metastore lock %r", name)
        thread = threading.Thread(target=keep, name=f"metastore-lock-ds={ds}", daemon=True)
        thread.start()
        try:
            yield name
        except BaseException as exc:
            if state["lost"]:
                raise LockLost(state["lost"]) from exc
            raise
        finally:
            stop.set()
            thread.join(timeout=15)
        if state["lost"]:  # lost as the block ended: what it wrote may have met the other run's writes
            raise LockLost(state["lost"])
    finally:
        _close(state["conn"])  # ends the session: releases the advisory lock
