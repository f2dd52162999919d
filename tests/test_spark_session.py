"""The embedded metastore admits one process: a second one is told so at once, with the holder."""
import subprocess
import sys
import time

import pytest

from recjob import config
from recjob import session

HOLDER = """
import sys, time
from recjob import config, session
cfg = config.load(None, [f"data_dir={sys.argv[1]}", "spark.master=local[1]", "spark.conf.spark.ui.enabled=false"])
s = session.session(cfg)
s.sql("SHOW DATABASES").collect()  # boots the Derby metastore
print("ready", flush=True)
sys.stdin.read()  # hold it until the test closes stdin
"""


def test_a_held_embedded_metastore_is_refused_at_once_with_the_holder(tmp_path):
    cfg = config.load(None, [f"data_dir={tmp_path}"])
    session.check_embedded_metastore(cfg)  # nobody holds it: fine
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"  # no timeout: a slow machine only waits longer
        t0 = time.monotonic()
        with pytest.raises(session.MetastoreBusy, match=r"is in use by another process \(pid \d+, java\)"
                                                        r".*external metastore"):
            session.check_embedded_metastore(cfg)
        assert time.monotonic() - t0 < 5
    finally:
        holder.stdin.close()
        holder.wait()
    for _ in range(600):  # released when the holder's JVM has exited (it outlives its Python by a moment)
        try:
            session.check_embedded_metastore(cfg)
            break
        except session.MetastoreBusy:
            time.sleep(0.5)
    else:
        pytest.fail("the metastore was not released 5 minutes after its holder exited")
