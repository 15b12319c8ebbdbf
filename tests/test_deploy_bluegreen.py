"""Blue-green through the real gateway: two real llama-server tracks (SmolLM2-135M Q4_1) behind the gateway, a
switch blue -> green that traffic follows (x-model-version and the gateway's replica URL), a broken green track
(healthy, but every chat answer is HTTP 500) and a dead one refusing the switch with nothing moved, a rollback,
the CLI's exit codes, and the audit chain of every move and refusal. The container variant (two model-server
containers of the serving image as tracks) runs with LLMP_CONTAINER_TESTS=1 (`make test-container`)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_gateway import MESSAGES, free_port

from llm_platform.deploy.bluegreen import DeployRefused, load_bluegreen, read_deploy_state, rollback, status, switch
from llm_platform.llamacpp import find_tool, llamacpp_available
from llm_platform.models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, find_packaged_gguf
from llm_platform.monitor.probe import ProbeSpec
from llm_platform.security.audit import verify_log
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.manager import ProcessReplica

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not llamacpp_available(), reason="llama.cpp is not built (make setup)")


def llama_track(tmp: Path, name: str) -> ProcessReplica:
    port = free_port()
    gguf = find_packaged_gguf(SMOLLM2_PACKAGE, SMOLLM2_GGUF)
    cmd = [str(find_tool("llama-server")), "-m", str(gguf), "--alias", "demo", "--host", "127.0.0.1", "--port", str(port),
           "-t", "1", "-c", "1024", "-np", "1", "--no-webui"]
    return ProcessReplica(cmd, port, tmp / f"{name}.log", startup_timeout_s=60).start()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    "blue and green llama-servers, a broken track (stub answering 500), the gateway whose manager routes `demo` to a track."
    tmp = tmp_path_factory.mktemp("bluegreen")
    blue, green = llama_track(tmp, "blue"), llama_track(tmp, "green")
    (tmp / "broken").mkdir()
    (tmp / "broken" / "stub.json").write_text(json.dumps({"status": 500}))
    bport = free_port()
    broken = ProcessReplica([sys.executable, str(ROOT / "tests" / "openai_stub_server.py"), "--port", str(bport),
                             "--name", "demo", "--model-dir", str(tmp / "broken")], bport, tmp / "broken.log").start()
    state = tmp / "gw"
    gcfg = GatewayConfig.model_validate({
        "port": free_port(), "models": {"demo": {"target": "bluegreen", "guardrails": None}},
        "auth": {"required": False}, "cache": {"enabled": False}, "audit": {"path": str(tmp / "gw-audit.jsonl")},
        "manager": {"state_dir": str(state), "probe_prompts": None}})
    bg = {"model": "demo", "state_dir": str(state), "deploy_dir": str(tmp / "deploy"),
          "audit_path": str(tmp / "deploy" / "audit.jsonl"), "audit_key_env": None, "health_timeout_s": 60,
          "probe_count": 2, "tracks": {"blue": {"url": blue.base_url, "version": "demo/1"},
                                       "green": {"url": green.base_url, "version": "demo/2"}}}
    (tmp / "bluegreen.yaml").write_text("# pytest tests/test_deploy_bluegreen.py\n" + yaml.safe_dump(bg))
    try:
        for r in (blue, green, broken):
            r.wait_healthy()
        with GatewayProcess(gcfg, log_path=tmp / "gateway.log") as gw:
            yield {"tmp": tmp, "gw": gw, "cfg": load_bluegreen(tmp / "bluegreen.yaml"), "yaml": tmp / "bluegreen.yaml",
                   "blue": blue, "green": green, "broken": broken}
    finally:
        for r in (blue, green, broken):
            r.stop(5)


def ask(gw) -> tuple[str, str]:
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=60,
                   json={"model": "demo", "messages": MESSAGES, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"], r.json()["choices"][0]["message"]["content"]


def routed_urls(gw) -> set[str]:
    return {r["url"] for r in httpx.get(gw.url + "/health", timeout=5).json()["replicas"] if r["model"] == "demo"}


def wait_version(gw, version: str, timeout: float = 10) -> None:
    "The gateway reloads routes.json every 0.25 s; a request after that is answered by the new track."
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=60,
                       json={"model": "demo", "messages": MESSAGES, "max_tokens": 4, "temperature": 0})
        if r.status_code == 200 and r.headers["x-model-version"] == version:
            return
        assert r.status_code in (200, 503), r.text      # 503: the first route is not loaded yet
        assert time.monotonic() < deadline, f"still {r.status_code} {r.headers.get('x-model-version')}, expected {version}"
        time.sleep(0.1)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_platform.cli", "deploy", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"})


def test_switch_refusals_and_rollback(stack):
    cfg, gw, lines = stack["cfg"], stack["gw"], []
    st = switch(cfg, "blue", actor="test", say=lines.append)
    assert st["active"] == "blue" and st["previous"] is None
    assert any("serving probe: 2 prompt(s)" in x for x in lines), lines
    wait_version(gw, "demo/1")
    assert routed_urls(gw) == {stack["blue"].base_url}

    # blue -> green: traffic follows
    st = switch(cfg, "green", actor="test", say=lines.append)
    assert (st["active"], st["previous"]) == ("green", "blue")
    wait_version(gw, "demo/2")
    assert routed_urls(gw) == {stack["green"].base_url}
    assert {ask(gw)[0] for _ in range(3)} == {"demo/2"}
    # the gateway's model manager made the move (a running-server target): its status names the track
    managed = json.loads((stack["tmp"] / "gw" / "status.json").read_text())["demo"]
    assert (managed["state"], managed["target"], managed["version"]) == ("ready", stack["green"].base_url, "demo/2")

    # a broken track: healthy, but the serving probe gets HTTP 500: refused, nothing moved
    broken = cfg.model_copy(update={"tracks": {**cfg.tracks, "blue": cfg.tracks["blue"].model_copy(
        update={"url": stack["broken"].base_url, "version": "demo/broken"})}})
    before = (stack["tmp"] / "gw" / "routes.json").read_text()
    with pytest.raises(DeployRefused, match="serving probe failed: .*HTTP 500"):
        switch(broken, "blue", actor="test", say=lines.append)
    assert (stack["tmp"] / "gw" / "routes.json").read_text() == before
    assert read_deploy_state(cfg)["active"] == "green" and ask(gw)[0] == "demo/2"

    # the CLI: a dead track refuses with exit 1 and a clear message; status says green is active
    dead_port = free_port()
    out = cli("switch", "blue", "-c", str(stack["yaml"]), "--set", f"tracks.blue.url=http://127.0.0.1:{dead_port}/v1",
              "--set", "health_timeout_s=1")
    assert out.returncode == 1 and "not ready" in out.stderr and "traffic stays on green" in out.stdout, out
    assert ask(gw)[0] == "demo/2"
    out = cli("status", "-c", str(stack["yaml"]), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["active"] == "green" and json.loads(out.stdout)["routed"] == "green"

    # rollback (through the CLI): back to blue, checked like any switch
    out = cli("rollback", "-c", str(stack["yaml"]), "--actor", "oncall")
    assert out.returncode == 0, out.stderr
    assert "rollback green -> blue" in out.stdout and "ok serving probe" in out.stdout, out.stdout
    wait_version(gw, "demo/1")
    assert routed_urls(gw) == {stack["blue"].base_url}
    st = status(cfg)
    assert (st["active"], st["previous"], st["routed"]) == ("blue", "green", "blue")
    assert [(h["action"], h["from"], h["to"]) for h in st["history"]] == [
        ("switch", None, "blue"), ("switch", "blue", "green"), ("rollback", "green", "blue")]

    # audited: every move and refusal, one intact hash chain
    events = [json.loads(x) for x in (stack["tmp"] / "deploy" / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["deploy.switch", "deploy.switch", "deploy.switch.refused",
                                            "deploy.switch.refused", "deploy.rollback"]
    assert events[-1]["actor"] == "oncall" and events[2]["data"]["version"] == "demo/broken"
    assert verify_log(stack["tmp"] / "deploy" / "audit.jsonl", key_env=None).ok


def test_no_manager_refuses_and_leaves_nothing_pending(stack, tmp_path):
    "A healthy track, but no gateway manager follows the state folder: refused, the request put back."
    from llm_platform.serve.manager import read_state
    cfg = stack["cfg"].model_copy(update={"state_dir": str(tmp_path / "no-gateway"), "deploy_dir": str(tmp_path / "d"),
                                          "audit_path": str(tmp_path / "d" / "audit.jsonl"), "health_timeout_s": 1})
    with pytest.raises(DeployRefused, match="model manager did not route demo to blue.*is the manager running"):
        switch(cfg, "blue", actor="test", say=lambda line: None)
    assert read_deploy_state(cfg)["active"] is None and not (tmp_path / "no-gateway" / "routes.json").exists()
    assert "demo" not in read_state(cfg.state_dir, "desired.json")["models"]      # withdrawn: no previous track


def test_rollback_with_nothing_before_refuses(tmp_path):
    cfg = load_bluegreen(ROOT / "configs" / "deploy" / "bluegreen.yaml",
                         {"deploy_dir": str(tmp_path), "audit_path": str(tmp_path / "a.jsonl")})
    with pytest.raises(DeployRefused, match="nothing to roll back to"):
        rollback(cfg, say=lambda s: None)


def test_kubernetes_refuses_without_a_cluster_and_prints_the_commands(tmp_path):
    "Nothing here answers `kubectl cluster-info`: the switch refuses and names every kubectl command."
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl")
    out = cli("switch", "green", "--backend", "kubernetes", "--set", f"deploy_dir={tmp_path}",
              "--set", f"audit_path={tmp_path}/a.jsonl")
    assert out.returncode == 1, out
    assert "+ kubectl cluster-info" in out.stdout
    text = out.stdout + out.stderr
    for cmd in ("rollout status deployment/model-server-green", "patch service model-server --type merge",
                "get service model-server"):
        assert cmd in text.replace("\n", " ") or cmd in text, text
    assert read_deploy_state(load_bluegreen(ROOT / "configs" / "deploy" / "bluegreen.yaml",
                                            {"deploy_dir": str(tmp_path)}))["active"] is None


IMAGE = "localhost/llm-platform-serving-cpu:0.1.0"


@pytest.mark.skipif(not os.environ.get("LLMP_CONTAINER_TESTS") or shutil.which("podman") is None,
                    reason="container test: LLMP_CONTAINER_TESTS=1 (make test-container)")
def test_containers_as_tracks(tmp_path):
    """Both tracks are model-server containers of the serving image (deploy/scripts/tracks.sh, host network); the
    switches go through deploy/scripts/bluegreen.sh; green's container stopped makes a switch to it refuse."""
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(ROOT / "deploy/docker/containers.conf")),
           "BLUE_PORT": str(free_port()), "GREEN_PORT": str(free_port()), "TRACK_PREFIX": f"llmp-bgtest-{os.getpid()}",
           "PY": sys.executable, "IMAGE": IMAGE, "BLUEGREEN_CONFIG": str(tmp_path / "bluegreen.yaml")}
    if subprocess.run(["podman", "image", "exists", IMAGE], env=env).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (make images)")
    state = tmp_path / "gw"
    bg = {"model": "demo", "state_dir": str(state), "deploy_dir": str(tmp_path / "deploy"),
          "audit_path": str(tmp_path / "deploy" / "audit.jsonl"), "audit_key_env": None, "probe_count": 2,
          "tracks": {t: {"url": f"http://127.0.0.1:{env[t.upper() + '_PORT']}/v1", "version": f"demo/{t}"}
                     for t in ("blue", "green")}}
    (tmp_path / "bluegreen.yaml").write_text("# pytest tests/test_deploy_bluegreen.py\n" + yaml.safe_dump(bg))
    gcfg = GatewayConfig.model_validate({
        "port": free_port(), "models": {"demo": {"target": "bluegreen", "guardrails": None}},
        "auth": {"required": False}, "cache": {"enabled": False}, "audit": {"path": str(tmp_path / "gw-audit.jsonl")},
        "manager": {"state_dir": str(state), "probe_prompts": None}})

    def script(*args, check=True):
        out = subprocess.run([str(ROOT / "deploy" / "scripts" / args[0]), *args[1:]], env=env, capture_output=True,
                             text=True, timeout=180)
        assert not check or out.returncode == 0, out.stdout + out.stderr
        return out

    t0 = time.monotonic()
    try:
        script("tracks.sh", "up")
        with GatewayProcess(gcfg, log_path=tmp_path / "gateway.log") as gw:
            script("bluegreen.sh", "switch", "blue")
            wait_version(gw, "demo/blue")
            out = script("bluegreen.sh", "switch", "green")
            assert "+ llm-platform deploy switch green" in out.stdout and "traffic on green" in out.stdout
            wait_version(gw, "demo/green")
            assert routed_urls(gw) == {bg["tracks"]["green"]["url"]}
            script("bluegreen.sh", "rollback")
            wait_version(gw, "demo/blue")
            script("tracks.sh", "down", "green")                  # green is gone: a switch to it must refuse
            out = script("bluegreen.sh", "switch", "green", "--set", "health_timeout_s=2", check=False)
            assert out.returncode == 1 and "not ready" in out.stderr, out.stdout + out.stderr
            assert ask(gw)[0] == "demo/blue" and status(load_bluegreen(tmp_path / "bluegreen.yaml"))["active"] == "blue"
    finally:
        script("tracks.sh", "down", check=False)
    assert time.monotonic() - t0 < 90


def test_quality_probe_gates_the_switch(stack, tmp_path):
    """With `quality:` set, the gate's probe (golden suite, scored as the gate scores it) is asked of the new track
    directly and compared with the baseline: an unreachable baseline refuses the switch, a reachable one lets it."""
    cfg = stack["cfg"].model_copy(update={"deploy_dir": str(tmp_path), "audit_path": str(tmp_path / "a.jsonl")})
    routes = stack["tmp"] / "gw" / "routes.json"      # the stack's gateway: its manager makes the move
    before = routes.read_text()

    def with_baseline(value: float):
        (tmp_path / f"b{value}.json").write_text(json.dumps({"suites": {"golden": {"metrics": {"pass": value}}}}))
        return cfg.model_copy(update={"quality": ProbeSpec(model="demo", api_key_env=None, suites=["golden"], limit=2,
                                                           baseline=str(tmp_path / f"b{value}.json"),
                                                           default_budget=0.0)})

    with pytest.raises(DeployRefused, match="quality probe breached: golden"):
        switch(with_baseline(2.0), "green", say=lambda s: None)
    assert read_deploy_state(cfg)["active"] is None and routes.read_text() == before
    st = switch(with_baseline(0.0), "green", say=lambda s: None)
    assert st["active"] == "green" and any(c.startswith("quality probe: golden") for c in st["history"][-1]["checks"])
    wait_version(stack["gw"], "demo/2")
