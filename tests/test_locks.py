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
