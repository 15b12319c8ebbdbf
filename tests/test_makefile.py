"""The seed's workflow commands are Makefile targets that do what their names say: `make help` lists each one,
`make -n` shows the command each runs, and `make deploy-<env>` without a cluster prints the kubectl commands it
would run (render, apply, the blue-green switch's rollout check, port-forward, selector patch) and changes nothing."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ["setup-dev", "setup-prod", "train-single", "train-distributed", "tune-hyperparams", "deploy-dev",
        "deploy-staging", "deploy-prod", "rollback", "test-unit", "test-integration", "test-performance",
        "test-security", "start-monitoring", "view-metrics", "check-health"]
# what `make -n <target>` must show (the target's own command, or the targets it runs)
RUNS = {"setup-prod": ["deploy/docker/build.sh serving-cpu"],
        "train-single": ["llm-platform train run --config configs/pipelines/tiny.yaml "
                         "--train-config configs/training/tiny.yaml"],
        "train-distributed": ["--train-config configs/training/distributed.yaml"],
        "tune-hyperparams": ["llm-platform train tune"],
        "deploy-dev": ["deploy/scripts/deploy.sh development"], "deploy-staging": ["deploy/scripts/deploy.sh staging"],
        "deploy-prod": ["deploy/scripts/deploy.sh production"],
        "rollback": ["deploy/scripts/bluegreen.sh rollback --backend kubernetes"],
        "test-unit": ["nbdev_test", "ruff check", "check_sync.sh"], "test-integration": ["-m pytest"],
        "test-performance": ["bench/serve_bench.py", "bench/gateway_bench.py"],
        "test-security": ["tests/test_security.py", "checkov", "--framework terraform", "hadolint.sh"],
        "setup-dev": ["jupyterlab", "deploy/terraform/tools.sh"],
        "start-monitoring": ["llm-platform monitor start"], "view-metrics": ["llm-platform monitor metrics"],
        "check-health": ["llm-platform monitor health"]}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    # -o setup: never (re)build .venv from a test; the targets' own commands are what is checked
    return subprocess.run(["make", "--no-print-directory", "-o", "setup", "-o", "system-deps", "-o", "container-deps",
                           "-o", "llamacpp", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_lists_every_seed_command():
    out = make("help")
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^  make (\S+)", out.stdout, re.M)
    assert set(SEED) <= set(listed), set(SEED) - set(listed)
    assert len(listed) == len(set(listed)), "a target is listed twice"


@pytest.mark.parametrize("target", SEED)
def test_dry_run_shows_what_it_runs(target):
    out = make("-n", target)
    assert out.returncode == 0, out.stderr
    for cmd in RUNS[target]:
        assert cmd in out.stdout, (target, cmd, out.stdout[-2000:])


@pytest.mark.parametrize("env_name", ["dev", "staging", "prod"])
def test_deploy_without_a_cluster_prints_the_kubectl_commands(env_name, tmp_path):
    (tmp_path / "kubeconfig").write_text("")                 # no cluster: kubectl falls back to localhost:8080
    full = {"dev": "development", "staging": "staging", "prod": "production"}[env_name]
    env = {"KUBECONFIG": str(tmp_path / "kubeconfig"), "OUT": str(tmp_path / f"{full}.yaml"),
           "PYTHONPATH": str(ROOT)}
    out = make(f"deploy-{env_name}", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "no Kubernetes cluster answers" in text and "nothing applied, nothing switched" in text, text
    for cmd in (f"kubectl apply --server-side -f {tmp_path}/{full}.yaml",
                "kubectl --namespace llm-platform rollout status deployment/model-server-",
                "kubectl --namespace llm-platform port-forward deployment/model-server-",
                "kubectl --namespace llm-platform patch service model-server --type merge -p "):
        assert cmd in text, (cmd, text)
    assert re.search(rf"render\s*: .*({full}|overlays/{full})", text), text
    strict = make(f"deploy-{env_name}", env={**env, "STRICT": "1"})
    assert strict.returncode != 0 and "no Kubernetes cluster answers" in strict.stdout
