"""One run per ds: a second run is refused at once with the holder; a dead holder's lock is taken over."""
import json
import socket
import subprocess
import time

import pytest

from recjob import locks, warehouse

DS = "2024-02-04"


def test_a_second_run_of_the_same_ds_is_refused_with_the_holder(spark, tmp_path):
    with locks.ds_lock(spark, str(tmp_path), DS, "recjob run") as path:
        holder = json.loads(warehouse.read_text(spark, path))
        with pytest.raises(locks.Busy, match=rf"ds={DS} is being run by recjob run \(pid {holder['pid']}"):
            with locks.ds_lock(spark, str(tmp_path), DS, "recjob train"):
                pass
        with locks.ds_lock(spark, str(tmp_path), "2024-02-11", "recjob run"):  # another ds is free
            pass
    with locks.ds_lock(spark, str(tmp_path), DS, "recjob run"):  # released after the block
        pass


def test_the_lock_of_a_killed_run_is_taken_over(spark, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = f"{tmp_path}/ds={DS}.lock"
    warehouse.write_text(spark, path, json.dumps({"pid": gone.pid, "host": socket.gethostname(), "what": "x",
                                                  "since": "earlier"}))
    with locks.ds_lock(spark, str(tmp_path), DS, "recjob run") as taken:
        assert json.loads(warehouse.read_text(spark, taken))["what"] == "recjob run"


def test_a_lock_not_refreshed_is_taken_over_after_the_timeout(spark, tmp_path):
    path = f"{tmp_path}/ds={DS}.lock"
    warehouse.write_text(spark, path, json.dumps({"pid": 1, "host": "another-host", "what": "x", "since": "s"}))
    with pytest.raises(locks.Busy):  # another host's holder, fresh: may be running
        with locks.ds_lock(spark, str(tmp_path), DS, "recjob run", stale_after_s=600):
            pass
    fs, hpath = warehouse.hadoop_fs(spark, path)
    fs.setTimes(hpath, int((time.time() - 900) * 1000), -1)
    with locks.ds_lock(spark, str(tmp_path), DS, "recjob run", stale_after_s=600):
        pass


def test_the_holder_refreshes_its_lock(spark, tmp_path):
    with locks.ds_lock(spark, str(tmp_path), DS, "recjob run", heartbeat_s=0.2) as path:
        fs, hpath = warehouse.hadoop_fs(spark, path)
        fs.setTimes(hpath, int((time.time() - 900) * 1000), -1)
        time.sleep(1.0)
        assert time.time() - fs.getFileStatus(hpath).getModificationTime() / 1000 < 60


class FakeDatabase:
    """Advisory locks of one PostgreSQL, as JDBC connections see them: a restart ends every session."""

    def __init__(self):
        self.held = {}  # lock name -> the connection holding it
        self.up = True

    def connect(self, application_name):
        if not self.up:
            raise RuntimeError("Connection to 127.0.0.1:5432 refused")
        return FakeConnection(self, application_name)

    def restart(self):
        for conn in list(self.held.values()):
            conn.broken = True
        self.held.clear()


class FakeConnection:
    def __init__(self, db, application_name):
        self.db, self.app, self.broken, self.closed = db, application_name, False, False
        self.sql, self.args = "", []

    def isValid(self, timeout):  # noqa: N802 (JDBC's name)
        return not (self.broken or self.closed)

    def close(self):
        self.closed = True
        for name, conn in list(self.db.held.items()):
            if conn is self:
                del self.db.held[name]

    def prepareStatement(self, sql):  # noqa: N802
        self.sql, self.args = sql, []
        return self

    def setString(self, i, value):  # noqa: N802
        self.args.append(value)

    def executeQuery(self):  # noqa: N802
        if "pg_try_advisory_lock" in self.sql:
            name = self.args[0]
            free = self.db.held.get(name) in (None, self)
            if free:
                self.db.held[name] = self
            self.rows = [(free,)]
        else:
            self.rows = [(c.app, "2024-02-04 10:00:00") for c in self.db.held.values()
                         if c is not self and c.app.startswith(self.args[0].rstrip("%"))]
        return self

    def next(self):
        if not self.rows:
            return False
        self.row = self.rows.pop(0)
        return True

    def getBoolean(self, i):  # noqa: N802
        return self.row[i - 1]

    def getString(self, i):  # noqa: N802
        return self.row[i - 1]

    def getTimestamp(self, i):  # noqa: N802
        return self.row[i - 1]


PG_CONF = {"spark.hadoop.javax.jdo.option.ConnectionURL": "jdbc:postgresql://127.0.0.1:5432/metastore"}


def _wait(condition, cap_s=60.0):
    deadline = time.monotonic() + cap_s
    while not condition():
        assert time.monotonic() < deadline, "the heartbeat did not act within the cap"
        time.sleep(0.02)


def test_the_metastore_lock_is_taken_again_after_postgresql_restarts(caplog):
    db = FakeDatabase()
    name = "recjob recjob ds=" + DS
    with locks.metastore_lock(None, PG_CONF, "recjob", DS, "recjob run", heartbeat_s=0.05, connect=db.connect):
        first = db.held[name]
        db.up = False
        db.restart()  # the lock went with the session; the database does not answer for a while
        _wait(lambda: "cannot reach the metastore database" in caplog.text)
        with pytest.raises(locks.Busy):  # and while it is down nobody else holds the lock either
            with locks.metastore_lock(None, PG_CONF, "recjob", DS, "other", connect=FakeDatabase().connect):
                raise locks.Busy("stand-in: a second database")
        db.up = True
        _wait(lambda: name in db.held)
        assert db.held[name] is not first and first.closed
        with pytest.raises(locks.Busy, match=r"being run by recjob run, pid"):  # held again: a second run refused
            with locks.metastore_lock(None, PG_CONF, "recjob", DS, "recjob train", connect=db.connect):
                pass
    assert "took the metastore lock" in caplog.text and name not in db.held  # released at the end


def test_a_run_whose_metastore_lock_was_taken_meanwhile_stops(caplog):
    db = FakeDatabase()
    stopped = []
    name = "recjob recjob ds=" + DS
    with pytest.raises(locks.LockLost, match=r"recjob train, pid .* holds it now; this run stops"):
        with locks.metastore_lock(None, PG_CONF, "recjob", DS, "recjob run", heartbeat_s=0.2, connect=db.connect,
                                  stop_run=lambda: stopped.append(True)):
            db.restart()
            other = db.connect("recjob ds=" + DS + ": recjob train, pid 42@elsewhere")
            assert locks._try_advisory_lock(other, name)  # another run takes the freed lock before the heartbeat
            _wait(lambda: stopped)
    assert db.held[name] is other  # the other run keeps it


def test_the_heartbeat_stops_the_main_thread_with_a_real_signal():
    db = FakeDatabase()
    name = "recjob recjob ds=" + DS
    with pytest.raises(locks.LockLost):
        with locks.metastore_lock(None, PG_CONF, "recjob", DS, "recjob run", heartbeat_s=0.05, connect=db.connect):
            db.restart()
            assert locks._try_advisory_lock(db.connect("recjob ds=x: other"), name)
            time.sleep(60)  # a blocking call: the SIGINT interrupts it
