"""A quality breach on the real gateway rolls the `champion` alias back, through a real Alertmanager.

What is real: an MLflow sqlite registry (model `demo`, version 1 champion, version 2 promoted over it
with `registry.models.promote`, each version carrying its gate figures as `evaluation_results.json`
attached by `attach_version_artifacts`), the model manager (`serve.manager.ModelManager`, following
`demo@champion`), the gateway worker (`serve.app.serve_gateway` reading the manager's routes, API keys,
audit), the monitor agent process (`monitor.alerts.AgentProcess`: the probe on a 1 s schedule, /metrics,
/alerts), `/usr/bin/prometheus-alertmanager` with a webhook route to the agent, and the registry's
`rollback`.

What stands in: the replicas are `tests/openai_stub_server.py` (as in tests/test_gateway_manager.py): a
vLLM replica takes ~40 s to start on 2 cores and the rollback starts one, which would not fit the 60 s
budget. The stub answers every prompt with the text in its folder's `stub.json`: version 1's text
holds every expected golden answer of the probed items, version 2's holds none (a model that serves
wrong answers). The gateway is started as the worker process (`serve_gateway`) with the manager in the
test process, because `run_gateway`'s own manager launches vLLM replicas only. The gateway runs
without guardrails (spaCy start-up); the probe's safety scorer applies them itself, as the gate does.

Helper PROM's Prometheus stack (the rule `QualityProbeFailing` on `llmp_quality_probe_breach`) is
not part of this test: the test reads the agent's /metrics and posts the alert to Alertmanager's
API (/api/v2/alerts) itself, labelled from the breached series, as Prometheus does when the rule fires.
"""
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from test_gateway_manager import STUB, model_folder

from llm_platform.config import load_config
from llm_platform.core import parent_death_hook, write_json
from llm_platform.evaluation.contract import ItemScore, TargetInfo, write_results
from llm_platform.evaluation.harness import SuitesConfig
from llm_platform.evaluation.suites import load_guardrails
from llm_platform.monitor.alerts import AgentConfig, AgentProcess, AlertPolicy, AlertRule
from llm_platform.monitor.probe import PROBE_SUITES, ProbeSpec, score_answer, suite_items
from llm_platform.registry.models import attach_version_artifacts, promote
from llm_platform.security.audit import verify_log
from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.manager import CommandLauncher, ModelManager, request_swap, wait_swap
from tests.browser import free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
LIMIT = 6                          # items per suite the probe asks
SUITES = ["golden", "safety"]
pytestmark = pytest.mark.skipif(not os.path.exists(ALERTMANAGER), reason="prometheus-alertmanager not installed")


def wait_for(what: str, check, timeout: float = 20, every: float = 0.05):
    "Poll `check()` until it returns something truthy; that value, or a TimeoutError naming `what`."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := check():
            return out
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s")


class Server:
    "A command in its own process group that dies with the test (parent-death signal)."
    def __init__(self, argv: list[str], log_path, env=None):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, start_new_session=True,
                                     preexec_fn=parent_death_hook())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill(); self.proc.wait()
        self.log.close()


GATEWAY_WORKER = ("import os; from llm_platform.serve.app import serve_gateway; from llm_platform.serve.config import "
                  "GatewayConfig; serve_gateway(GatewayConfig.model_validate_json(os.environ['GW_CONFIG']))")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    "Registry (demo/1 good, demo/2 promoted and bad), manager with stub replicas, gateway worker, an API key."
    from mlflow import MlflowClient

    from llm_platform.core import mlflow_experiment
    d = tmp_path_factory.mktemp("rollback")
    cfg = load_config("configs/evaluation/suites.yaml", kind=SuitesConfig)
    items = {s: suite_items(s, cfg, LIMIT) for s in SUITES}
    good = "Nimbus Notes: " + "; ".join(doc["check"]["value"] for doc in items["golden"])
    replies = {1: good, 2: "Sorry, I am not sure about that."}
    uri, runs = f"sqlite:///{d}/mlflow.db", d / "runs"
    client, exp = mlflow_experiment(uri, "demo")
    guard = load_guardrails(cfg.safety_config)
    client.create_registered_model("demo")
    for v in (1, 2):
        model = model_folder(runs / f"run-{v}" / "04_merge" / "model", reply=replies[v])
        write_json(runs / f"run-{v}" / "run.json", {"run_id": f"run-{v}", "model_dir": str(model)})
        run = client.create_run(exp).info.run_id
        client.create_model_version("demo", source=str(runs / f"run-{v}"), run_id=run, tags={"run_id": f"run-{v}"})
        # the gate's figures: both versions passed their gate offline (version 2 answers well there, badly served)
        rows = [ItemScore(suite=s, item_id=doc["id"], metric=PROBE_SUITES[s], kind="binary",
                          value=score_answer(s, doc, good, guard), tags=doc.get("tags", []))
                for s in SUITES for doc in items[s]]
        write_results(TargetInfo(kind="endpoint", name="demo", location="offline", model_version=f"demo/{v}"),
                      {"name": "test", "version": "1"}, SUITES, rows, {}, d / f"eval-{v}")
        attach_version_artifacts("demo", v, d / f"eval-{v}", tracking_uri=uri)
    client.set_registered_model_alias("demo", "champion", "1")
    promote("demo", "2", override_reason="test: version 2 passed its gate offline", tracking_uri=uri,
            audit_path=d / "registry_audit.jsonl")
    key, _ = APIKeyStore(d / "keys.json").create("probe", ["chat"])
    lo = random.randrange(20000, 40000, 50)
    manager = {"state_dir": str(d / "state"), "tracking_uri": uri, "runs_dir": str(runs), "port_range": [lo, lo + 49],
               "poll_s": 0.1, "watch_aliases_s": 0.3, "probe_prompts": None}
    gw_cfg = GatewayConfig.model_validate({
        "port": free_port(), "models": {name: {"target": "demo@champion", "guardrails": None} for name in ("demo", "canary")},
        "auth": {"key_store": str(d / "keys.json")}, "audit": {"path": str(d / "gateway_audit.jsonl")},
        "manager": manager})
    for name in ("demo", "canary"):
        request_swap(d / "state", name, "demo@champion")
    with ModelManager(gw_cfg.manager, CommandLauncher(STUB, startup_timeout_s=20)):
        for name in ("demo", "canary"):
            assert wait_swap(d / "state", name, "demo@champion", timeout_s=30)["version"] == "demo/2"
        gw = Server([sys.executable, "-c", GATEWAY_WORKER], d / "gateway.log", {"GW_CONFIG": gw_cfg.model_dump_json()})
        url = f"http://127.0.0.1:{gw_cfg.port}"
        try:
            wait_for("gateway /health", lambda: _get(url + "/health"), 30)
            yield {"dir": d, "uri": uri, "key": key, "url": url, "client": MlflowClient(uri, uri), "replies": replies}
        finally:
            gw.stop()


def _get(url: str):
    try:
        r = httpx.get(url, timeout=2)
        return r if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def served(stack, model: str = "demo") -> tuple[str, str]:
    "(x-model-version, answer) of one uncached request through the gateway."
    r = httpx.post(stack["url"] + "/v1/chat/completions", timeout=10,
                   headers={"authorization": f"Bearer {stack['key']}", "cache-control": "no-cache"},
                   json={"model": model, "messages": [{"role": "user", "content": "Hello?"}], "max_tokens": 8})
    return r.headers.get("x-model-version"), r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else r.text


def champion(stack) -> str:
    return str(stack["client"].get_registered_model("demo").aliases["champion"])


def breaches(metrics_text: str) -> list[dict]:
    "Label sets of the llmp_quality_probe_breach series at 1 (what the QualityProbeFailing rule selects)."
    out = []
    for line in metrics_text.splitlines():
        if line.startswith("llmp_quality_probe_breach{") and line.rsplit(" ", 1)[1] == "1.0":
            pairs = (kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
            out.append({k: v.strip('"') for k, v in pairs})
    return out


def audit_records(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def start_alertmanager(d, webhook_url: str) -> tuple[Server, str]:
    port = free_port()
    (d / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "agent", "group_by": ["alertname", "model"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "agent", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}]}))
    am = Server([ALERTMANAGER, f"--config.file={d / 'alertmanager.yml'}", f"--storage.path={d / 'am-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
                d / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"
    wait_for("alertmanager ready", lambda: _get(url + "/-/ready"), 20)
    return am, url


def fire(am_url: str, labels: dict, summary: str):
    "Post one alert to Alertmanager, as Prometheus does when a rule fires."
    r = httpx.post(am_url + "/api/v2/alerts", timeout=5, json=[{
        "labels": labels, "annotations": {"summary": summary},
        "startsAt": datetime.now(UTC).isoformat(), "generatorURL": "http://prometheus.invalid/graph"}])
    assert r.status_code == 200, r.text


def test_quality_breach_rolls_back_and_traffic_follows(stack, tmp_path):
    """`demo` and `canary` both serve `demo@champion`; the policy rolls back on `demo`'s alert and only
    notifies on `canary`'s. Both probes breach on demo/2; canary's alert moves nothing, demo's moves
    `champion` to 1 and the gateway's traffic (both names) follows; a second alert of the incident does not
    roll back again."""
    d = tmp_path
    assert champion(stack) == "2" and served(stack)[0] == "demo/2"
    policy = AlertPolicy(rules=[AlertRule(alertname="QualityProbeFailing", action="rollback"),
                                AlertRule(alertname="QualityProbeFailing", model="canary", action="notify")],
                         registered_models={"canary": "demo"}, cooldown_s=600, tracking_uri=stack["uri"],
                         registry_audit_path=str(stack["dir"] / "registry_audit.jsonl"),
                         audit_path=str(d / "alerts_audit.jsonl"), state_path=str(d / "alert_state.json"),
                         audit_key_env=None)
    probes = [ProbeSpec(endpoint=stack["url"] + "/v1", api_key_env="MON_TEST_PROBE_KEY", model=name,
                        registered_model="demo", suites=SUITES, limit=LIMIT, interval_s=1, tracking_uri=stack["uri"],
                        timeout_s=10) for name in ("demo", "canary")]
    cfg = AgentConfig(port=free_port(), probes=probes, policy=policy, history_path=str(d / "probe_history.jsonl"))
    agent = AgentProcess(cfg, log_path=d / "agent.log", env={"MON_TEST_PROBE_KEY": stack["key"],
                                                             "PYTHONPATH": os.pathsep.join(sys.path)})
    metrics = lambda: httpx.get(agent.url + "/metrics", timeout=5).text
    with agent:
        t0 = time.monotonic()
        hits = wait_for("both probes breach on /metrics", lambda: len(b := breaches(metrics())) == 2 and b, 40, 0.1)
        t_breach = time.monotonic()
        assert sorted((b["model"], b["version"], b["suite"]) for b in hits) == [
            ("canary", "demo/2", "golden"), ("demo", "demo/2", "golden")]
        text = metrics()
        assert 'llmp_quality_probe_breach{model="demo",suite="safety",version="demo/2"} 0.0' in text
        assert 'llmp_quality_probe_baseline{model="demo",suite="golden",version="demo/2"} 1.0' in text
        assert 'llmp_quality_probe_score{model="demo",suite="golden",version="demo/2"} 0.0' in text
        alerts = {b["model"]: {"alertname": "QualityProbeFailing", "severity": "critical", **b} for b in hits}

        am, am_url = start_alertmanager(d, agent.url + "/alerts")
        try:
            # notify: the alert is decided and audited, nothing moves
            fire(am_url, alerts["canary"], "canary: golden pass rate below the gate figure minus its budget")
            wait_for("canary's decision", lambda: 'action="notify",alertname="QualityProbeFailing",model="canary",outcome="notified",'
                     f'version="{alerts["canary"]["version"]}"' in metrics(), 15, 0.05)
            records = audit_records(d / "alerts_audit.jsonl")
            assert [r["event"] for r in records] == ["monitor.alert.notified"]
            assert records[0]["data"]["alert"]["labels"]["model"] == "canary"
            time.sleep(1.5)                 # longer than the rollback below takes to move the alias and the traffic
            assert champion(stack) == "2" and served(stack)[0] == served(stack, "canary")[0] == "demo/2"

            # rollback: champion back to 1, the manager swaps the replica, the gateway's answers follow
            t_fire = time.monotonic()
            fire(am_url, alerts["demo"], "demo: golden pass rate below the gate figure minus its budget")
            wait_for("demo's decision", lambda: 'outcome="rolled_back"' in metrics(), 15, 0.05)
            t_decided = time.monotonic()
            assert audit_records(d / "alerts_audit.jsonl")[-1]["event"] == "monitor.alert.rolled_back"
            assert champion(stack) == "1"
            version, answer = wait_for("traffic on demo/1", lambda: (s := served(stack))[0] == "demo/1" and s, 20, 0.05)
            t_follow = time.monotonic()
            assert answer == stack["replies"][1]
            wait_for("canary's traffic on demo/1", lambda: served(stack, "canary")[0] == "demo/1", 20, 0.05)

            # the same incident again (another suite's alert joins demo's group): no second rollback
            fire(am_url, {**alerts["demo"], "suite": "safety"}, "second alert of the same incident")
            wait_for("the second webhook", lambda: len(audit_records(d / "alerts_audit.jsonl")) >= 4, 15)
            again = audit_records(d / "alerts_audit.jsonl")[2:]
            assert {r["event"] for r in again} == {"monitor.alert.skipped"}, again
            assert champion(stack) == "1"
            # the probe now measures version 1: no breach, and the demo/2 series are gone
            wait_for("probe of demo/1", lambda: 'llmp_quality_probe_breach{model="demo",suite="golden",version="demo/1"} 0.0'
                     in metrics(), 15, 0.1)
            assert 'model="demo",suite="golden",version="demo/2"' not in metrics()
        finally:
            am.stop()
    audit = audit_records(stack["dir"] / "registry_audit.jsonl")
    assert [r["event"] for r in audit].count("registry.rollback") == 1
    assert audit[-1]["event"] == "registry.rollback" and audit[-1]["actor"] == "monitor-agent"
    assert verify_log(d / "alerts_audit.jsonl", key_env=None).ok
    assert verify_log(stack["dir"] / "registry_audit.jsonl", key_env=None).ok
    print(f"agent start -> both breaches on /metrics {t_breach - t0:.2f} s; alert posted -> webhook decided "
          f"(rolled back) {t_decided - t_fire:.2f} s; decided -> gateway traffic on demo/1 {t_follow - t_decided:.2f} s; "
          f"alert posted -> traffic follows {t_follow - t_fire:.2f} s")


AGENT_PARENT = """
import sys, time
from llm_platform.monitor.alerts import AgentConfig, AgentProcess, AlertPolicy
cfg = AgentConfig(port=int(sys.argv[1]), history_path=None,
                  policy=AlertPolicy(audit_path=sys.argv[2] + "/audit.jsonl", state_path=None, audit_key_env=None))
agent = AgentProcess(cfg, log_path=sys.argv[2] + "/agent.log").start().wait_healthy(60)
print(agent.proc.pid, flush=True)
time.sleep(600)
"""


def test_agent_dies_with_its_parent(tmp_path):
    "SIGKILL of whoever started the agent takes the agent down (parent-death signal), port freed."
    import psutil

    from llm_platform.serve.vllm_server import port_is_free
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", AGENT_PARENT, str(port), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        pid = int(parent.stdout.readline())
        assert _get(f"http://127.0.0.1:{port}/health")
        parent.kill(); parent.wait(10)
        def gone():
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        wait_for("agent gone after its parent's SIGKILL", gone, 15)
        wait_for("agent port free", lambda: port_is_free("127.0.0.1", port), 5)
    finally:
        if parent.poll() is None:
            parent.kill(); parent.wait()
