"""Hot swap through the gateway on real vLLM replicas: a served name follows an MLflow alias;
`llm-platform serve swap` moves it to another registered version under a steady load of 8
clients with zero failed requests, and every response names the version that answered it."""
import subprocess
import sys
import threading
import time

import httpx
import yaml
from mlflow import MlflowClient
from test_gateway import MESSAGES, free_port

from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.manager import wait_swap


def wait_workers_routed(url: str, in_a_row: int = 10, timeout_s: float = 30) -> None:
    """The manager has routed the model, but each gateway worker applies routes.json on its own poll (0.25 s):
    wait until /health is ok `in_a_row` times running (each call lands on either worker)."""
    deadline, ok = time.monotonic() + timeout_s, 0
    while ok < in_a_row:
        assert time.monotonic() < deadline, f"{url}/health never ok {in_a_row} times in a row"
        ok = ok + 1 if httpx.get(url + "/health", timeout=5).json()["status"] == "ok" else 0
        time.sleep(0.05)


def test_hot_swap_under_load_of_8_clients(tiny_run, redis_server, tmp_path):
    runs, uri = tiny_run["runs_dir"], f"sqlite:///{tiny_run['runs_dir']}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    name = tiny_run["registered_model"]
    v1 = client.get_model_version(name, tiny_run["registered_version"])
    v2 = client.create_model_version(name, source=v1.source, run_id=v1.run_id, tags=v1.tags)   # same weights, new version
    client.set_registered_model_alias(name, "champion", v1.version)
    key, _ = APIKeyStore(tmp_path / "keys.json").create("load", ["chat"])
    state = tmp_path / "state"
    # replicas unpinned: vLLM's `auto` binding puts every engine on core 0, and during a swap two run at once
    (tmp_path / "vllm.yaml").write_text("# pytest tests/test_gateway_swap.py\n_base: configs/serving/vllm_test.yaml\n"
                                        "cpu:\n  omp_threads_bind: nobind\n")
    cfg = {"port": free_port(), "workers": 2, "store": redis_server.url,
           "models": {name: {"target": f"{name}@champion", "guardrails": None}},
           "auth": {"key_store": str(tmp_path / "keys.json"),      # a tier this load never exhausts
                    "tiers": {"default": {"requests": 10_000_000, "tokens": 1_000_000_000}}},
           "audit": {"path": str(tmp_path / "audit.jsonl")},
           "manager": {"state_dir": str(state), "tracking_uri": uri, "runs_dir": str(runs),
                       "serving_config": str(tmp_path / "vllm.yaml"), "port_range": [8150, 8199],
                       "poll_s": 0.25, "watch_aliases_s": 0, "drain_timeout_s": 120}}
    (tmp_path / "gateway.yaml").write_text("# pytest tests/test_gateway_swap.py\n" + yaml.safe_dump(cfg))
    with GatewayProcess(GatewayConfig.model_validate(cfg), log_path=tmp_path / "gateway.log") as gw:
        first = wait_swap(state, name, f"{name}@champion", 600)
        assert first["version"] == f"{name}/{v1.version}"
        wait_workers_routed(gw.url)      # the load measures the swap, not the workers' start-up
        results, stop = [], threading.Event()

        def client_loop():
            with httpx.Client(timeout=120) as c:
                while not stop.is_set():
                    r = c.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                               json={"model": name, "messages": MESSAGES, "max_tokens": 8, "temperature": 0.7})
                    results.append((time.monotonic(), r.status_code, r.headers.get("x-model-version"),
                                    r.json().get("model") if r.status_code == 200 else r.text))
                    time.sleep(0.1)      # steady, not flat out: the new replica must still start on 2 cores
        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(3)
        out = subprocess.run([sys.executable, "-m", "llm_platform.cli", "serve", "swap", f"{name}/{v2.version}",
                              "--model", name, "--config", str(tmp_path / "gateway.yaml"), "--timeout", "600"],
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        swapped = time.monotonic()
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join()
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    versions = {r[2] for r in results}
    assert versions == {f"{name}/{v1.version}", f"{name}/{v2.version}"}, versions
    after = [r for r in results if r[0] > swapped + 1]
    assert after and all(r[2] == f"{name}/{v2.version}" for r in after)
