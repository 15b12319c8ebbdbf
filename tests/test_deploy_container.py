"""The CPU serving image, built and run for real: podman (runc), the local debootstrap base, Redis on the host.

Slow (minutes: the base image once, the image build, llama-server + gateway start), so it runs only from
`make test-container` (LLMP_CONTAINER_TESTS=1), which .ci/run calls after `make test`. Host networking,
everything bound to 127.0.0.1 on free ports (bridge networks are not allowed on these machines).
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy/docker/containers.conf"
USER_ID = 10001                      # the image's user (deploy/docker/serving-cpu.Dockerfile)

pytestmark = [pytest.mark.container, pytest.mark.skipif(
    not os.environ.get("LLMP_CONTAINER_TESTS") or shutil.which("podman") is None,
    reason="container test: run `make test-container` (needs podman, runc, debootstrap and root)")]


def podman(*args, check=True, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, timeout=timeout, capture_output=True, text=True,
                          env={**os.environ, "CONTAINERS_CONF": str(CONF)}, **kw)


@pytest.fixture(scope="module")
def image():
    "Build the image (the base once, then layers cached by content): deploy/docker/build.sh, as `make images`."
    t0 = time.monotonic()
    r = subprocess.run(["deploy/docker/build.sh", "serving-cpu"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900, env={**os.environ, "CONTAINERS_CONF": str(CONF), "PY": sys.executable})
    assert r.returncode == 0, f"image build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    tag = next(line.split()[1].rstrip(":") for line in r.stdout.splitlines()[::-1] if line.startswith("[images] localhost/"))
    print(f"\nimage {tag} built in {time.monotonic() - t0:.0f} s")
    return tag


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    "redis-server on the host, TCP on 127.0.0.1 (the container reaches it over host networking)."
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            break
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def served(image, redis, tmp_path_factory):
    "The container on host networking with Redis as its store and an API key in its mounted runs/ folder."
    from llm_platform.security.auth import APIKeyStore
    runs = tmp_path_factory.mktemp("container-runs")
    key, _ = APIKeyStore(runs / "auth/api_keys.json").create("ci", ["chat"], ttl_days=1, tenant="ci")
    for p in [runs, *runs.rglob("*")]:
        os.chown(p, USER_ID, USER_ID)            # the container's user writes logs, audit and key use there
    port, model_port, name = free_port(), free_port(), f"llmp-test-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "--network", "host", "-v", f"{runs}:/srv/llmp/runs",
           "-e", "LLMP_HOST=127.0.0.1", "-e", f"LLMP_PORT={port}", "-e", f"LLMP_MODEL_PORT={model_port}",
           "-e", f"LLM_PLATFORM_REDIS_URL=redis://127.0.0.1:{redis}/0", image)
    import httpx
    url, health = f"http://127.0.0.1:{port}", None
    try:
        while time.monotonic() - t0 < 180:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", f"container {state}:\n{podman('logs', name, check=False).stdout[-3000:]}"
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                if health["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health and health["status"] == "ok", f"not healthy: {health}\n{podman('logs', name, check=False).stdout[-3000:]}"
        print(f"\ncontainer healthy {time.monotonic() - t0:.1f} s after `podman run`")
        yield {"name": name, "url": url, "key": key, "runs": runs, "redis": redis}
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def test_image_is_pinned_nonroot_without_secrets(image):
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == f"{USER_ID}:{USER_ID}"
    check = info.get("Healthcheck") or cfg.get("Healthcheck")          # kept: the docker image format
    assert check["Test"][0] == "CMD" and "/health" in check["Test"][-1]
    names = [e.split("=", 1)[0] for e in cfg["Env"]]
    assert not [n for n in names if any(w in n.upper() for w in ("KEY", "SECRET", "TOKEN", "PASSWORD"))], names
    # the venv holds exactly serving.lock's pins (+ the package): nothing of the training stack
    frozen = podman("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c",
                    "import importlib.metadata as m; print('\\n'.join(sorted(f'{d.name}=={d.version}' for d in m.distributions())))").stdout
    got = {line.lower().replace("_", "-") for line in frozen.split()}
    want = {line.lower().replace("_", "-") for line in (ROOT / "requirements/serving.lock").read_text().split()
            if "==" in line}
    assert got - want == {"llm-platform==0.1.0"} and want <= got, (got ^ want)
    assert "torch" not in frozen.lower()


def test_openai_client_through_containerised_gateway(served):
    from openai import OpenAI
    client = OpenAI(base_url=served["url"] + "/v1", api_key=served["key"], max_retries=0, timeout=60)
    r = client.chat.completions.with_raw_response.create(
        model="demo", temperature=0, max_tokens=24,
        messages=[{"role": "user", "content": "Say hello to alice@example.com in five words."}])
    reply = r.parse()
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0
    assert r.headers["x-model-version"] == "demo"
    # the gateway used Redis (quota counters, cache) and refused a wrong key
    keys = subprocess.run(["redis-cli", "-p", str(served["redis"]), "dbsize"], capture_output=True, text=True).stdout
    assert int(keys) > 0
    with pytest.raises(Exception) as e:
        OpenAI(base_url=served["url"] + "/v1", api_key="llmp_000000000000_" + "x" * 43, max_retries=0).models.list()
    assert getattr(e.value, "status_code", None) == 401
    audit, t0 = served["runs"] / "gateway/audit.jsonl", time.monotonic()
    while not (audit.exists() and audit.stat().st_size) and time.monotonic() - t0 < 10:   # group commit: ~100 ms
        time.sleep(0.1)
    assert audit.stat().st_uid == USER_ID                   # written in the mounted folder by the unprivileged user
    rec = json.loads(audit.read_text().splitlines()[0])["data"]
    assert rec["model"] == "demo" and rec["status"] == 200
    assert "pre_call:modify:EMAIL_ADDRESS" in rec["guardrails"]          # the PII guardrail ran in the image


def test_reports_healthy(served):
    # No systemd here to run podman's health timers: run the image's HEALTHCHECK once, as the timer would.
    r = podman("healthcheck", "run", served["name"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    status = podman("inspect", "--format", "{{.State.Health.Status}}", served["name"]).stdout.strip()
    assert status == "healthy"


def test_runs_as_non_root(served):
    assert podman("exec", served["name"], "id", "-u").stdout.strip() == str(USER_ID)
    top = podman("top", served["name"], "user", "huser", "args").stdout.splitlines()[1:]
    assert len(top) >= 3, top                   # the supervisor, llama-server, the gateway
    assert all(line.split()[0] != "root" and line.split()[1] != "root" for line in top), top
    assert any("llama-server" in line for line in top) and any("llm_platform.serve.app" in line for line in top), top


def test_stops_cleanly_on_sigterm(served):
    t0 = time.monotonic()
    podman("stop", "-t", "20", served["name"], timeout=60)
    took = time.monotonic() - t0
    state = json.loads(podman("inspect", served["name"]).stdout)[0]["State"]
    logs = podman("logs", served["name"]).stdout
    assert state["ExitCode"] == 0, (state, logs[-2000:])           # not 137: nobody needed SIGKILL
    assert took < 15, took
    assert "[entrypoint] stopped" in logs
