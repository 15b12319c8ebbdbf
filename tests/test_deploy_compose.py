"""The full compose file brought up here: the services that can run without a registry (gateway, model server,
Redis, Prometheus, Alertmanager, MLflow) from deploy/compose/docker-compose.full.yml + docker-compose.local.yml,
with Debian's docker-compose talking to podman's Docker API socket, host networking and free ports.

Slow (image builds and six containers), so it runs only from `make test-container` (LLMP_CONTAINER_TESTS=1).
Grafana and Jaeger have no image here (no registry): `config` validation covers them
(tests/test_deploy_files.py)."""
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from test_deploy_container import CONF, ROOT, free_port, podman

COMPOSE = ROOT / "deploy/compose"
SERVICES = ["redis", "model-server", "gateway", "prometheus", "alertmanager", "mlflow"]

pytestmark = [pytest.mark.container, pytest.mark.skipif(
    not os.environ.get("LLMP_CONTAINER_TESTS") or shutil.which("podman") is None
    or shutil.which("docker-compose") is None,
    reason="container test: run `make test-container` (needs podman, runc, debootstrap, docker-compose and root)")]


def build(name: str) -> str:
    r = subprocess.run(["deploy/docker/build.sh", name], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "CONTAINERS_CONF": str(CONF), "PY": sys.executable})
    assert r.returncode == 0, f"{name} build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return next(line.split()[1].rstrip(":") for line in r.stdout.splitlines()[::-1] if line.startswith("[images] localhost/"))


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    "podman's Docker API on a unix socket, for docker-compose."
    sock = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            env={**os.environ, "CONTAINERS_CONF": str(CONF)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.1)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def stack(docker_host, tmp_path_factory):
    from concurrent.futures import ThreadPoolExecutor
    serving = build("serving-cpu")           # first: makes the local base when it is missing
    with ThreadPoolExecutor(2) as pool:      # then apt downloads, pip installs and layer commits overlap
        ops, mlflow = pool.map(build, ["ops", "mlflow"])
    mon = ROOT / "deploy/monitoring"
    if not (mon / "prometheus/prometheus.yml").exists():       # before the monitoring issue's configs land here
        mon = tmp_path_factory.mktemp("monitoring")
        (mon / "prometheus").mkdir()
        (mon / "alertmanager").mkdir()
        (mon / "prometheus/prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
        (mon / "alertmanager/alertmanager.yml").write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
        for p in [mon, *mon.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    ports = {k: free_port() for k in ("GATEWAY_PORT", "MODEL_PORT", "REDIS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT",
                                      "MLFLOW_PORT")}
    project = f"llmp-test-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "DOCKER_HOST": docker_host,
           "SERVING_IMAGE": serving, "OPS_IMAGE": ops, "MLFLOW_IMAGE": mlflow, "MONITORING_DIR": str(mon),
           "GF_SECURITY_ADMIN_PASSWORD": "unused-here", "COMPOSE_HTTP_TIMEOUT": "300"}
    compose = ["docker-compose", "-p", project, "-f", str(COMPOSE / "docker-compose.full.yml"),
               "-f", str(COMPOSE / "docker-compose.local.yml")]
    t0 = time.monotonic()
    r = subprocess.run([*compose, "up", "-d", *SERVICES], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"ports": ports, "project": project, "t0": t0, "logs": lambda s: subprocess.run(
            [*compose, "logs", "--no-color", "--tail", "40", s], env=env, capture_output=True, text=True).stdout}
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "20"], env=env, capture_output=True, text=True, timeout=300)


def wait_for(url: str, ok, timeout: float = 120):
    import httpx
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        try:
            last = httpx.get(url, timeout=2)
            if ok(last):
                return last
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{url}: {last!r}")


def test_services_come_up_and_answer(stack):
    p = stack["ports"]
    wait_for(f"http://127.0.0.1:{p['PROMETHEUS_PORT']}/-/ready", lambda r: r.status_code == 200)
    wait_for(f"http://127.0.0.1:{p['ALERTMANAGER_PORT']}/-/ready", lambda r: r.status_code == 200)
    wait_for(f"http://127.0.0.1:{p['MODEL_PORT']}/health", lambda r: r.status_code == 200)
    assert subprocess.run(["redis-cli", "-p", str(p["REDIS_PORT"]), "ping"], capture_output=True,
                          text=True).stdout.strip() == "PONG"
    try:
        h = wait_for(f"http://127.0.0.1:{p['GATEWAY_PORT']}/health", lambda r: r.json()["status"] == "ok")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{stack['logs']('gateway')}") from None
    assert h.json()["store"] == "ok"
    wait_for(f"http://127.0.0.1:{p['MLFLOW_PORT']}/health", lambda r: r.status_code == 200)
    print(f"\ncompose: 6 services answering {time.monotonic() - stack['t0']:.1f} s after `up`")


def test_gateway_answers_through_compose(stack):
    from openai import OpenAI
    name = f"{stack['project']}_gateway_1"
    key = podman("exec", name, "python3", "-m", "llm_platform.cli", "keys", "create", "ci", "--ttl-days", "1").stdout.split()[0]
    client = OpenAI(base_url=f"http://127.0.0.1:{stack['ports']['GATEWAY_PORT']}/v1", api_key=key, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="demo", temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": "Name a colour."}])
    assert reply.choices[0].message.content.strip()
    # the gateway runs without its own llama-server (LLMP_UPSTREAM): only the supervisor and the gateway
    top = podman("top", name, "args").stdout
    assert "llama-server" not in top and "llm_platform.serve.app" in top


def test_mlflow_tracks_and_registers_through_compose(stack, tmp_path):
    "The containerised MLflow server: a run with a metric and an artifact (proxied into the container's volume), a model version."
    from mlflow.tracking import MlflowClient
    uri = f"http://127.0.0.1:{stack['ports']['MLFLOW_PORT']}"
    wait_for(f"{uri}/health", lambda r: r.status_code == 200)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment(f"compose-{uuid.uuid4().hex[:6]}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "loss", 0.5)
    (tmp_path / "card.md").write_text("# model card\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "card.md"))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["card.md"]
    name = f"compose-model-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/card.md", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    assert client.get_model_version_by_alias(name, "champion").version == version.version
    # the artifact lives in the container's volume, written by its non-root user
    mlflow = f"{stack['project']}_mlflow_1"
    found = podman("exec", mlflow, "find", "/mlflow/artifacts", "-name", "card.md", "-user", "mlflow").stdout.split()
    assert len(found) == 1, found
