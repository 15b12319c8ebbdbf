"""The model manager with real processes: an MLflow sqlite registry, stub OpenAI servers as replicas, signals.

The stub (tests/openai_stub_server.py) stands in for vLLM everywhere except the one slow test,
which runs vLLM on the tiny random model.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from llm_platform.core import read_json, write_json
from llm_platform.serve.manager import (
    ROUTES,
    STATUS,
    CommandLauncher,
    ManagerConfig,
    ModelManager,
    TargetError,
    read_state,
    request_swap,
    resolve_target,
    wait_swap,
)
from llm_platform.serve.vllm_server import port_is_free

ROOT = Path(__file__).resolve().parents[1]
STUB = [sys.executable, str(ROOT / "tests" / "openai_stub_server.py"), "--port", "{port}", "--name", "{name}",
        "--model-dir", "{model_dir}"]


def model_folder(path: Path, reply: str | None = None, status: int = 200, ignore_sigterm: bool = False) -> Path:
    "A folder the stub serves (and resolve_target accepts: it has a config.json)."
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "stub"}')
    (path / "model.safetensors").write_bytes(path.name.encode())
    write_json(path / "stub.json", {"reply": reply or f"{path.name} says hi", "status": status,
                                    "ignore_sigterm": ignore_sigterm})
    return path


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def replica_pids() -> set[int]:
    "Stub servers started (directly or through a manager) by this test process (a zombie or gone child is not one)."
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "openai_stub_server.py" in " ".join(p.cmdline()):
                out.add(p.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def ports():
    lo = random.randrange(20000, 40000, 50)
    return (lo, lo + 49)


@pytest.fixture
def registry(tmp_path):
    "A real sqlite registry: model `demo` with versions 1 (run-1), 2 (run-2), 3 (run-3: not merged), 4 (no run tag)."
    from mlflow import MlflowClient
    runs = tmp_path / "runs"
    for i in (1, 2):
        model = model_folder(runs / f"run-{i}" / "04_merge" / "model", reply=f"v{i}")
        write_json(runs / f"run-{i}" / "run.json", {"run_id": f"run-{i}", "model_dir": str(model)})
    write_json(runs / "run-3" / "run.json", {"run_id": "run-3"})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("demo")
    for run_id in ("run-1", "run-2", "run-3"):
        client.create_model_version("demo", source=str(runs / run_id), tags={"run_id": run_id})
    client.create_model_version("demo", source="s3://bucket/adapter")
    client.set_registered_model_alias("demo", "champion", "1")
    return {"uri": uri, "runs": runs, "client": client}


def test_resolve_target_against_a_real_registry(registry, tmp_path):
    uri, runs = registry["uri"], str(registry["runs"])
    t = resolve_target("demo@champion", uri, runs)
    assert (t.version, t.run_id, t.model_dir) == ("demo/1", "run-1", str(registry["runs"] / "run-1/04_merge/model"))
    assert resolve_target("demo/2", uri, runs).run_id == "run-2"
    registry["client"].set_registered_model_alias("demo", "champion", "2")
    assert resolve_target("demo@champion", uri, runs).version == "demo/2"
    path = resolve_target(str(registry["runs"] / "run-1" / "04_merge" / "model"), uri, runs)
    assert path.version.startswith("model-") and path.run_id is None
    assert resolve_target(str(registry["runs"] / "run-1"), uri, runs).run_id == "run-1"   # a run folder
    errors = {"nope@champion": "no registered model 'nope'", "demo@staging": "no alias 'staging' (aliases: champion)",
              "demo/9": "no version 9", "demo/3": "no merged model", "demo/4": "no run_id tag",
              str(tmp_path / "missing"): "no such folder"}
    for spec, words in errors.items():
        with pytest.raises(TargetError, match=words.replace("(", r"\(").replace(")", r"\)")):
            resolve_target(spec, uri, runs)
    with pytest.raises(TargetError, match="no MLflow registry"):
        resolve_target("demo/1", f"sqlite:///{tmp_path}/other.db", runs)
    write_json(registry["runs"] / "run-2" / "run.json", {"run_id": "run-2"})
    shutil.rmtree(registry["runs"] / "run-1")
    with pytest.raises(TargetError, match="names run 'run-1'"):
        resolve_target("demo/1", uri, runs)


def test_swap_probe_failure_and_draining(tmp_path, ports):
    v1, v2 = model_folder(tmp_path / "v1"), model_folder(tmp_path / "v2")
    bad = model_folder(tmp_path / "v3", status=500)
    state = tmp_path / "gateway"
    cfg = ManagerConfig(state_dir=str(state), port_range=ports, poll_s=0.1, watch_aliases_s=0,
                        probe_prompts=str(ROOT / "data/sample/golden.jsonl"))
    before, launched = replica_pids(), []
    class CountingLauncher(CommandLauncher):
        def launch(self, model_dir, port, name, log_path):
            launched.append(Path(model_dir).name); return super().launch(model_dir, port, name, log_path)
    with ModelManager(cfg, CountingLauncher(STUB, startup_timeout_s=20)):
        request_swap(state, "demo", str(v1))
        r1 = wait_swap(state, "demo", str(v1), timeout_s=20)
        assert r1["replicas"][0]["upstream_model"] == "demo" and r1["version"].startswith("v1-")
        assert set(r1["replicas"][0]) == {"url", "version", "upstream_model"}
        gen1 = read_state(state, ROUTES)["generation"]

        # a client that re-reads the routes before every request, as the gateway's workers do
        errors, answers, done = [], [], threading.Event()
        def client():
            while not done.is_set():
                url = read_state(state, ROUTES)["models"]["demo"]["replicas"][0]["url"]
                try:
                    r = httpx.post(url + "/chat/completions", json={"model": "demo", "messages": []}, timeout=5)
                    answers.append(r.json()["choices"][0]["message"]["content"])
                except Exception as e:
                    errors.append(repr(e))
                time.sleep(0.02)
        t = threading.Thread(target=client); t.start()
        t0 = time.monotonic()
        request_swap(state, "demo", str(v2))
        r2 = wait_swap(state, "demo", str(v2), timeout_s=20)
        swap_s = time.monotonic() - t0
        assert read_state(state, ROUTES)["generation"] == gen1 + 1 and r2["version"].startswith("v2-")
        deadline = time.monotonic() + 10
        while not port_is_free("127.0.0.1", port_of(r1["replicas"][0]["url"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_is_free("127.0.0.1", port_of(r1["replicas"][0]["url"])), "old replica still listening"
        done.set(); t.join()
        assert not errors and "v1 says hi" in answers and answers[-1] == "v2 says hi"
        assert len(replica_pids() - before) == 1

        request_swap(state, "demo", str(bad))
        with pytest.raises(RuntimeError, match="HTTP 500"):
            wait_swap(state, "demo", str(bad), timeout_s=20)
        status = read_state(state, STATUS)["demo"]
        assert status["state"] == "failed" and status["version"].startswith("v3-")
        assert read_state(state, ROUTES)["models"]["demo"] == r2 and read_state(state, ROUTES)["generation"] == gen1 + 1
        time.sleep(0.5)                                   # the failed target is not relaunched every pass
        assert len(replica_pids() - before) == 1 and launched == ["v1", "v2", "v3"]

        request_swap(state, "demo", str(v1))              # rollback: the same swap, to the earlier version
        assert wait_swap(state, "demo", str(v1), timeout_s=20)["version"] == r1["version"]
    assert replica_pids() == before
    print(f"swap v1 -> v2 took {swap_s:.2f} s (stub replicas)")


def test_alias_move_swaps_and_unknown_alias_fails(registry, tmp_path, ports):
    state = tmp_path / "gateway"
    cfg = ManagerConfig(state_dir=str(state), port_range=ports, poll_s=0.1, watch_aliases_s=0.3, probe_prompts=None,
                        tracking_uri=registry["uri"], runs_dir=str(registry["runs"]))
    with ModelManager(cfg, CommandLauncher(STUB, startup_timeout_s=20)):
        request_swap(state, "demo", "demo@champion")
        route = wait_swap(state, "demo", "demo@champion", timeout_s=30)
        assert route["version"] == "demo/1"
        registry["client"].set_registered_model_alias("demo", "champion", "2")
        deadline = time.monotonic() + 15
        while read_state(state, ROUTES)["models"]["demo"]["version"] != "demo/2" and time.monotonic() < deadline:
            time.sleep(0.1)
        route = read_state(state, ROUTES)["models"]["demo"]
        assert route["version"] == "demo/2" and route["target"] == "demo@champion"
        assert httpx.post(route["replicas"][0]["url"] + "/chat/completions", json={}).json()["choices"][0][
            "message"]["content"] == "v2"
        request_swap(state, "other", "demo@nope")
        with pytest.raises(RuntimeError, match="no alias 'nope'"):
            wait_swap(state, "other", "demo@nope", timeout_s=10)
        assert "other" not in read_state(state, ROUTES)["models"]


MANAGER_SCRIPT = textwrap.dedent("""
    import sys
    from llm_platform.serve.manager import CommandLauncher, ManagerConfig, ModelManager
    state, lo, hi, stub = sys.argv[1:5]
    cfg = ManagerConfig(state_dir=state, port_range=(int(lo), int(hi)), probe_prompts=None, poll_s=0.1)
    ModelManager(cfg, CommandLauncher([sys.executable, stub, "--port", "{port}", "--name", "{name}",
                                       "--model-dir", "{model_dir}"])).serve_forever()
""")


@pytest.mark.parametrize("signals,stubborn", [(["SIGTERM"], False), (["SIGTERM", "SIGINT"], True), (["SIGKILL"], False)])
def test_replicas_never_outlive_the_manager(tmp_path, ports, signals, stubborn):
    """SIGTERM: graceful stop; a second signal: kill at once (replicas that ignore SIGTERM would otherwise
    get 20 s); SIGKILL of the manager: the kernel's parent-death signal."""
    state, model = tmp_path / "gateway", model_folder(tmp_path / "v1", ignore_sigterm=stubborn)
    request_swap(state, "demo", str(model), replicas=2)
    proc = subprocess.Popen([sys.executable, "-c", MANAGER_SCRIPT, str(state), *map(str, ports),
                             STUB[1]], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        route = wait_swap(state, "demo", str(model), timeout_s=30)
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) == 2 and len(route["replicas"]) == 2
        t0 = time.monotonic()
        for name in signals:
            proc.send_signal(getattr(signal, name)); time.sleep(0.3)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(p) for p in pids), f"replicas outlived the manager after {signals}"
        print(f"{'+'.join(signals)}: replicas gone {time.monotonic() - t0:.2f} s after the signal")
        assert all(port_is_free("127.0.0.1", port_of(r["url"])) for r in route["replicas"])
    finally:
        if proc.poll() is None:
            proc.kill(); proc.wait()


@pytest.mark.slow
def test_vllm_replica_swap(tmp_path, ports):
    "The manager's default launcher: vLLM on the tiny random model (~40 s eager start on a CPU)."
    from llm_platform.config import ModelConfig, load_config
    from llm_platform.models import prepare_model
    tiny = prepare_model(load_config("configs/models/tiny.yaml", kind=ModelConfig))
    state = tmp_path / "gateway"
    cfg = ManagerConfig(state_dir=str(state), serving_config="configs/serving/vllm_test.yaml", port_range=ports,
                        poll_s=0.2, watch_aliases_s=0, probe_prompts=str(ROOT / "data/sample/golden.jsonl"))
    with ModelManager(cfg) as mgr:
        request_swap(state, "tiny", str(tiny))
        route = wait_swap(state, "tiny", str(tiny), timeout_s=420)
        replica = mgr.live["tiny"].replicas[0]
        r = httpx.post(route["replicas"][0]["url"] + "/chat/completions", timeout=60,
                       json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["model"] == "tiny"
        assert mgr.launcher.in_flight(replica) == 0             # vLLM's queue gauges are read
        pids = [replica.proc.pid] + [p.pid for p in psutil.Process(replica.proc.pid).children(recursive=True)]
    deadline = time.monotonic() + 20          # vLLM's engine process exits after its API server, on a busy box later
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(gone(p) for p in pids) and port_is_free("127.0.0.1", port_of(route["replicas"][0]["url"]))
    assert read_json(state / "routes.json")["models"]["tiny"]["version"].startswith(tiny.name)
