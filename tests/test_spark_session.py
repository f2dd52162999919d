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
        # recjob's own lock, taken before the JVM boots Derby: refused at once, with the holder's pid
        with pytest.raises(session.MetastoreBusy, match=rf"in use by another process \(pid {holder.pid}, .*\)"
                                                        r".*external metastore"):
            session.hold_embedded_metastore(cfg)
        # Derby's own lock (a process that is not recjob, e.g. spark-sql): the JVM is named
        with pytest.raises(session.MetastoreBusy, match=r"is in use by another process \(pid \d+, java\)"):
            session.check_embedded_metastore(cfg)
        assert time.monotonic() - t0 < 5
    finally:
        holder.stdin.close()
        holder.wait()
    # right after the holder's Python exits its JVM may still hold Derby's lock: taking it waits for that
    session.hold_embedded_metastore(cfg, wait_s=600)  # generous: only a very busy machine takes long
    session._held.pop(cfg.data_dir).close()


def _recjob(*argv: str, data_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recjob", *argv, "--set", f"data_dir={data_dir}",
                             "--set", "spark.master=local[1]", "--set", "spark.conf.spark.ui.enabled=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_back_to_back_commands_on_the_embedded_metastore_both_succeed(tmp_path):
    """A command waits for its own JVM before it returns, so the next one finds the metastore free."""
    for _ in range(2):
        proc = _recjob("sql", "SELECT 1 AS one", data_dir=tmp_path)
        out, _ = proc.communicate()
        assert proc.returncode == 0, out[-3000:]
        assert "one\n1" in out


def test_two_commands_started_together_never_race_inside_derby(tmp_path):
    """Both may run one after the other or one be refused with exit 5 at once; never the Derby XSDB6 failure."""
    procs = [_recjob("sql", "SHOW DATABASES", data_dir=tmp_path) for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 5]), (codes, [o[-2000:] for o in outs])
    assert not any("XSDB6" in o for o in outs)
    if codes == [0, 5]:
        refused = next(o for p, o in zip(procs, outs) if p.returncode == 5)
        assert "embedded metastore admits one process at a time" in refused and refused.count("Traceback") == 0


ODD_DATA_DIR = """
import sys
from recjob import config, session, warehouse
cfg = config.load(None, [f"data_dir={sys.argv[1]}", "spark.master=local[1]", "spark.conf.spark.ui.enabled=false",
                         "database=odd"])
spark = session.session(cfg)
spark.sql("CREATE DATABASE IF NOT EXISTS odd")
df = spark.createDataFrame([("u", 1, "i", "t", 1.0)], "reviewerID string, rank int, asin string, title string, score float")
for _ in range(2):  # ADD PARTITION ... LOCATION, then SET LOCATION
    assert warehouse.publish_partition(df, "odd.recommendations", "2026-01-04") == 1
print("rows", spark.table("odd.recommendations").count(), flush=True)
"""


@pytest.mark.parametrize("name", ["with space", "it's", 'quo"te', "ünïcode"])
def test_a_data_dir_with_spaces_quotes_and_unicode_works(tmp_path, name):
    data_dir = tmp_path / name
    done = subprocess.run([sys.executable, "-c", ODD_DATA_DIR, str(data_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows 1" in done.stdout
    assert (data_dir / "metastore_db").is_dir() and not (tmp_path / "file:").exists()


def test_a_file_url_data_dir_is_the_local_folder(tmp_path):
    cfg = config.load(None, [f"data_dir=file://{tmp_path}/a%20b"])
    assert cfg.data_dir == f"{tmp_path}/a b"
    assert "file:" not in session.spark_conf(cfg)["spark.hadoop.javax.jdo.option.ConnectionURL"]
    with pytest.raises(config.ConfigError, match="not a host"):
        config.load(None, ["data_dir=file://otherhost/x"])
    with pytest.raises(config.ConfigError, match="glob character"):  # Spark globs table folders: refused at once
        config.load(None, [f"data_dir={tmp_path}/part[1]"])
    with pytest.raises(config.ConfigError, match="glob character"):
        config.load(None, [f"data_dir={tmp_path}/back\\slash"])
