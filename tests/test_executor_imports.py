"""The executors' Python has numpy, pandas and pyarrow only (deploy/services.sh builds such a one for the local
cluster; README "Run it like production on one machine"): recjob reaches it through --py-files, and every module
whose functions run in executors must import there. A module-level import of PyYAML, SciPy, TensorFlow or
Petastorm in that chain fails every task of a stage on a real cluster, while a one-JVM run never notices."""
import subprocess
import sys

DRIVER_ONLY = ("yaml", "scipy", "tensorflow", "keras", "petastorm", "matplotlib", "airflow", "psutil")
from recjob.names import STAGES

EXECUTOR_SIDE = ["recjob.stages." + s for s in STAGES] + [
    "recjob.topk", "recjob.metrics", "recjob.models", "recjob.readers.movielens", "recjob.readers.delimited", "recjob.readers.sequences"]

PROBE = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the executors' Python")
sys.meta_path.insert(0, Block())
for module in sys.argv[2].split(","):
    importlib.import_module(module)
print("ok")
"""


def test_modules_run_in_executors_import_without_driver_only_packages():
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(DRIVER_ONLY), ",".join(EXECUTOR_SIDE)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_probe_fails_when_a_blocked_package_is_imported():
    out = subprocess.run([sys.executable, "-c", PROBE, "yaml", "recjob.config"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0  # config imports PyYAML only when it parses
    out = subprocess.run([sys.executable, "-c", PROBE, "numpy", "recjob.topk"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "numpy is not in the executors' Python" in out.stderr


def test_a_wheel_in_py_files_is_refused_before_anything_runs():
    """Spark puts .zip/.egg/.py of --py-files on the executors' path, not .whl: refuse it with the fix."""
    import pytest
    from pyspark import SparkConf

    from recjob import session
    from recjob.config import ConfigError

    session.check_py_files(SparkConf(loadDefaults=False).set("spark.submit.pyFiles", "file:/x/dist/recjob.zip"))
    with pytest.raises(ConfigError, match=r"recjob-0.1.0-py3-none-any.whl: Spark does not put .whl files .*make dist"):
        session.check_py_files(SparkConf(loadDefaults=False).set(
            "spark.submit.pyFiles", "file:/x/a.zip,file:/x/dist/recjob-0.1.0-py3-none-any.whl"))
