"""docker/ cannot be built here (no engine); check what can be: COPY sources and the compose file."""
import importlib.util
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT


def _checker():
    spec = importlib.util.spec_from_file_location("check_context", ROOT / "docker" / "check_context.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_copy_sources_exist_and_compose_is_consistent():
    assert _checker().problems() == []


def test_checker_notices_a_missing_source(tmp_path, monkeypatch):
    mod = _checker()
    fake = tmp_path / "docker"
    fake.mkdir()
    (fake / "Dockerfile.x").write_text("FROM scratch\nCOPY not_there /x\n")
    (fake / "compose.yaml").write_text("services: {}\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    assert mod.problems() == ["Dockerfile.x: COPY source not_there is missing from the build context"]


def test_compose_services():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert {"spark-master", "spark-worker", "airflow"} <= set(compose["services"])


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker client not installed")
def test_docker_compose_config_if_the_client_can():
    out = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker" / "compose.yaml"), "config", "-q"],
                         capture_output=True, text=True)
    if out.returncode != 0 and ("unknown" in out.stderr or "not a docker command" in out.stderr):
        pytest.skip("this docker client has no compose plugin")
    assert out.returncode == 0, out.stderr
