"""Prometheus and Alertmanager on real components: the real `prometheus` binary scrapes a running gateway and a
llama-server (the tiny run's GGUF) found through file_sd labels, and the series carry model and version; recording
rules evaluate on them; Alertmanager routes quality/drift alerts to the monitor agent's webhook and the rest to
`notify`; `promtool check config`, `promtool test rules` and `amtool check-config` pass on the deploy files."""
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from llm_platform.config import ServingConfig, load_config
from llm_platform.core import read_json
from llm_platform.monitor import stack as ms
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.check import gateway_for
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.llamacpp import LlamaCppServer
from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "monitoring"
MODEL = "tiny"
CONTRACT_ALERTS = {"GatewayLatencySLOBurn", "GatewayErrorRateHigh", "ReplicaDown", "QueueGrowing", "InputDriftDetected",
                   "OutputDriftDetected", "QualityProbeFailing"}


class Webhook:
    "A real HTTP receiver for Alertmanager's webhook POSTs: {path: [payload, ...]}."
    def __init__(self):
        received: dict[str, list] = {}
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.setdefault(self.path, []).append(json.loads(body))
                self.send_response(200); self.end_headers()

            def log_message(self, *a):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alertnames(self, path: str) -> set[str]:
        return {a["labels"]["alertname"] for p in self.received.get(path, []) for a in p["alerts"]}


def wait_for(fn, timeout_s: float = 30, what: str = "condition"):
    "Poll `fn` until it returns something truthy; its last value in the failure message."
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not met after {timeout_s} s; last: {last!r}")


@pytest.fixture(scope="module")
def stack(tiny_run, tmp_path_factory):
    """llama-server on the tiny run's F16 GGUF, the gateway in front of it (version = the registry version), and
    Prometheus (1 s scrapes and rule evaluations) + Alertmanager from MonitoringStack; a few requests sent."""
    tmp = tmp_path_factory.mktemp("monitor")
    export = read_json(Path(tiny_run["run_dir"]) / "05_export" / "metrics.json")["metrics"]
    version = str(tiny_run["registered_version"])
    hook = Webhook()
    scfg = ServingConfig(port=free_port(), llamacpp={"parallel": 2, "ctx_size": 2048})
    with LlamaCppServer(export["files"]["f16"]["path"], scfg, name=tiny_run["run_id"], log_path=tmp / "llamacpp.log") as srv:
        gw_cfg, key = gateway_for(srv.base_url, MODEL, version, tiny_run["run_id"], tmp,
                                  load_config("configs/serving/gateway.yaml", kind=GatewayConfig), free_port())
        models = {MODEL: {**gw_cfg.models[MODEL].model_dump(), "guardrails": None}}
        gw_cfg = GatewayConfig.model_validate({**gw_cfg.model_dump(), "models": models, "cache": {"enabled": False}})
        with GatewayProcess(gw_cfg, log_path=tmp / "gateway.log") as gw:
            mcfg = ms.MonitoringConfig(
                work_dir=str(tmp / "mon"), gateway_url=gw.url, agent_url=None,
                prometheus={"port": free_port(), "scrape_interval": "1s", "evaluation_interval": "1s",
                            "data_dir": str(tmp / "mon" / "tsdb")},
                alertmanager={"port": free_port(), "data_dir": str(tmp / "mon" / "am"),
                              "webhook_url": f"{hook.url}/alerts", "notify_webhook_url": f"{hook.url}/notify",
                              "group_wait": "0s"})
            with ms.MonitoringStack(mcfg, routes=ms.routes_from_gateway(gw_cfg)) as mon:
                client = OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
                completion_tokens = 0

                def ask(i: int) -> None:
                    nonlocal completion_tokens
                    r = client.chat.completions.create(model=MODEL, max_tokens=8, temperature=0,
                                                       messages=[{"role": "user", "content": f"Question {i}: does it sync?"}])
                    completion_tokens += r.usage.completion_tokens
                # One request, then the rest once Prometheus has scraped its series: a counter first seen at 1 and
                # then at 4 has a rate; one first seen at 4 has none (Prometheus 2 does not assume a start at 0).
                ask(0)
                wait_for(lambda: ms.query(mon.prometheus_url, f'llmp_gateway_requests_total{{model="{MODEL}"}}'),
                         what="the first request's series scraped")
                ask(1); ask(2)
                chunks = list(client.chat.completions.create(model=MODEL, max_tokens=8, stream=True,
                                                             messages=[{"role": "user", "content": "Stream, please."}]))
                assert chunks
                yield {"mon": mon, "cfg": mcfg, "gw": gw, "gw_cfg": gw_cfg, "srv": srv, "version": version,
                       "requests": 4, "completion_tokens": completion_tokens, "hook": hook, "tmp": tmp}
    hook.server.shutdown()


def _value(rows: list[dict]) -> float:
    assert len(rows) == 1, rows
    return float(rows[0]["value"][1])


def test_targets_are_up_with_model_and_version_labels(stack):
    mon, v = stack["mon"], stack["version"]
    def all_up():
        ts = httpx.get(f"{mon.prometheus_url}/api/v1/targets").json()["data"]["activeTargets"]
        return ts if len(ts) == 4 and all(t["health"] == "up" for t in ts) else None
    targets = wait_for(all_up, what="all four targets up")
    jobs = {t["labels"]["job"]: t["labels"] for t in targets}
    assert set(jobs) == {"prometheus", "alertmanager", "gateway", "model_servers"}
    srv = jobs["model_servers"]
    assert (srv["model"], srv["version"], srv["url"]) == (MODEL, v, stack["srv"].base_url)   # from file_sd


def test_gateway_series_carry_model_and_version(stack):
    mon, v = stack["mon"], stack["version"]
    sel = f'job="gateway", model="{MODEL}", version="{v}"'
    total = wait_for(lambda: (rows := ms.query(mon.prometheus_url, f"sum(llmp_gateway_requests_total{{{sel}}})"))
                     and _value(rows) >= stack["requests"] and rows, what="gateway request counter scraped")
    assert _value(total) == stack["requests"]
    assert _value(ms.query(mon.prometheus_url, f'sum(llmp_gateway_requests_total{{{sel}, status="200"}})')) == stack["requests"]
    upstream = ms.query(mon.prometheus_url, f"sum(llmp_gateway_upstream_duration_seconds_count{{{sel}}})")
    assert _value(upstream) >= 3                      # the non-streamed ones at least
    healthy = ms.query(mon.prometheus_url, f"llmp_gateway_replica_healthy{{{sel}}}")
    assert [r["metric"]["url"] for r in healthy] == [stack["srv"].base_url] and _value(healthy) == 1
    # The latency SLO's threshold is a real bucket of the gateway's end-to-end histogram (else the SLO reads nothing).
    slo_bucket = ms.query(mon.prometheus_url, f'gen_ai_server_request_duration_seconds_bucket{{{sel}, le="10.0"}}')
    assert slo_bucket and sum(float(r["value"][1]) for r in slo_bucket) >= 1


def test_model_server_series_carry_version_from_file_sd(stack):
    "llama-server's own counters know no version: Prometheus adds model/version/url from the file_sd target labels."
    mon, v = stack["mon"], stack["version"]
    sel = f'job="model_servers", model="{MODEL}", version="{v}"'
    predicted = wait_for(lambda: (rows := ms.query(mon.prometheus_url, f"llamacpp:tokens_predicted_total{{{sel}}}"))
                         and _value(rows) >= stack["completion_tokens"] and rows, what="llama.cpp counters scraped")
    assert predicted[0]["metric"]["url"] == stack["srv"].base_url
    assert _value(predicted) >= stack["completion_tokens"] > 0      # + the streamed request's tokens
    for gauge in ("llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:predicted_tokens_seconds"):
        assert ms.query(mon.prometheus_url, f"{gauge}{{{sel}}}"), gauge     # what the dashboards and QueueGrowing read


def test_recording_rules_evaluate_on_the_real_series(stack):
    mon, v = stack["mon"], stack["version"]
    sel = f'model="{MODEL}", version="{v}"'
    rate = wait_for(lambda: ms.query(mon.prometheus_url, f"model_version:llmp_gateway_requests:rate5m{{{sel}}}"),
                    what="the request-rate recording rule")
    assert _value(rate) > 0
    ratio = wait_for(lambda: ms.query(mon.prometheus_url, f"model_version:llmp_gateway_requests:error_ratio_5m{{{sel}}}"),
                     what="the error-ratio recording rule")
    assert _value(ratio) == 0                                        # every request answered 200
    rules = httpx.get(f"{mon.prometheus_url}/api/v1/rules").json()["data"]["groups"]
    alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
    assert CONTRACT_ALERTS <= alerts
    bad = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") == "err"]
    assert not bad, bad


def test_dashboard_queries_parse_and_show_the_served_version(stack):
    "Every Grafana query is valid PromQL for the real Prometheus; the overview's traffic panels show the version."
    from llm_platform.monitor import dashboards as dash
    mon, v = stack["mon"], stack["version"]

    def fill(expr: str) -> str:
        return expr.replace("$__rate_interval", "1m").replace("$model", MODEL).replace("$version", v)
    with httpx.Client() as client:
        for build in dash.DASHBOARDS.values():
            for expr in dash.dashboard_exprs(build()):
                ms.query(mon.prometheus_url, fill(expr), client=client)   # PrometheusQueryError on a parse error
    exprs = {p["title"]: p["targets"][0]["expr"] for p in dash.serving_overview()["panels"] if p.get("targets")}
    for title in ("Requests / s", "Error ratio (5xx + streams ended in error)", "Healthy replicas"):
        rows = wait_for(lambda e=fill(exprs[title]): ms.query(mon.prometheus_url, e), what=title)
        assert {(r["metric"]["model"], r["metric"]["version"]) for r in rows} == {(MODEL, v)}, title


def test_metrics_summary_has_the_served_version(stack):
    "`make view-metrics`: one row per model version from the recording rules."
    v = stack["version"]
    rows = wait_for(lambda: [r for r in ms.metrics_summary(stack["mon"].prometheus_url)
                             if (r["model"], r["version"]) == (MODEL, v) and r["requests_per_s"]], what="summary row")
    assert rows[0]["requests_per_s"] > 0 and rows[0]["error_ratio"] == 0
    assert ms.format_summary(rows).splitlines()[1].split()[:2] == [MODEL, v]


def test_alertmanager_routes_quality_and_drift_to_the_agent_webhook(stack):
    "Alerts posted to the real Alertmanager: quality/drift reach the agent's URL and notify; the others notify only."
    mon, hook = stack["mon"], stack["hook"]
    am = httpx.get(f"{mon.prometheus_url}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
    assert [a["url"] for a in am] == [f"{mon.alertmanager_url}/api/v2/alerts"]       # Prometheus sends its alerts there
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    posted = [{"labels": {"alertname": name, "severity": "critical", "model": MODEL, "version": stack["version"]},
               "annotations": {"summary": "test"}, "startsAt": now}
              for name in ("QualityProbeFailing", "InputDriftDetected", "ReplicaDown")]
    httpx.post(f"{mon.alertmanager_url}/api/v2/alerts", json=posted).raise_for_status()
    wait_for(lambda: hook.alertnames("/alerts") == {"QualityProbeFailing", "InputDriftDetected"}
             and hook.alertnames("/notify") == {"QualityProbeFailing", "InputDriftDetected", "ReplicaDown"},
             timeout_s=30, what=f"webhook deliveries ({hook.received})")
    payload = hook.received["/alerts"][0]
    assert payload["receiver"] == "llmp-monitor-agent" and payload["alerts"][0]["labels"]["model"] == MODEL


def test_check_health_sees_every_component(stack):
    rows = ms.check_health(stack["cfg"], routes=ms.routes_from_gateway(stack["gw_cfg"]))
    assert [(r["component"], r["up"]) for r in rows] == [
        ("gateway", True), (f"model server {MODEL} {stack['version']}", True), ("prometheus", True), ("alertmanager", True)]


def test_a_port_in_use_fails_with_the_log(stack):
    "A second Prometheus on a busy port is refused before it starts (else /-/ready would answer from the first)."
    cfg, tmp = stack["cfg"], stack["tmp"]
    other = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(update={"data_dir": str(tmp / "tsdb2")})})
    server = ms.ServerProcess("prometheus", ms.prometheus_command(other, Path(cfg.work_dir) / "prometheus.yml"),
                           stack["mon"].prometheus_url, tmp / "second.log")
    with pytest.raises(OSError, match="already in use"):
        server.start()
    assert server.proc is None


# --- the deploy files, checked by the tools that run them ------------------------------------------------------

def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_promtool_check_config():
    r = _run("promtool", "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout and "FAILED" not in r.stdout + r.stderr


def test_promtool_rule_unit_tests_pass_and_cover_every_alert():
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    r = _run("promtool", "test", "rules", *map(str, tests))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(tests) >= 2
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "alerts.yml").read_text())
    defined = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for f in tests for case in yaml.safe_load(f.read_text())["tests"]
              for t in case.get("alert_rule_test", [])}
    fired = {t["alertname"] for f in tests for case in yaml.safe_load(f.read_text())["tests"]
             for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    quiet = {t["alertname"] for f in tests for case in yaml.safe_load(f.read_text())["tests"]
             for t in case.get("alert_rule_test", []) if not t.get("exp_alerts")}
    assert CONTRACT_ALERTS <= defined and defined == tested == fired == quiet, (defined, tested, fired, quiet)


def test_promtool_rule_tests_catch_a_broken_rule(tmp_path):
    "The unit tests can fail: a wrong error threshold (50% instead of 5%) breaks them."
    shutil.copytree(DEPLOY / "prometheus", tmp_path / "prometheus")
    alerts = tmp_path / "prometheus" / "rules" / "alerts.yml"
    text = alerts.read_text()
    assert "error_ratio_5m > 0.05" in text
    alerts.write_text(text.replace("error_ratio_5m > 0.05", "error_ratio_5m > 0.5"))
    r = _run("promtool", "test", "rules", str(tmp_path / "prometheus" / "tests" / "alerts_test.yml"))
    assert r.returncode != 0 and "GatewayErrorRateHigh" in r.stdout + r.stderr, r.stdout + r.stderr


def test_amtool_check_config_and_routes():
    conf = str(DEPLOY / "alertmanager" / "alertmanager.yml")
    r = _run("amtool", "check-config", conf)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    expected = {"QualityProbeFailing": "llmp-monitor-agent,notify", "InputDriftDetected": "llmp-monitor-agent,notify",
                "OutputDriftDetected": "llmp-monitor-agent,notify", "GatewayLatencySLOBurn": "notify",
                "GatewayErrorRateHigh": "notify", "ReplicaDown": "notify", "QueueGrowing": "notify"}
    for name, receivers in expected.items():
        r = _run("amtool", "config", "routes", "test", f"--config.file={conf}", f"alertname={name}", "severity=critical")
        assert r.stdout.strip() == receivers, (name, r.stdout, r.stderr)
    am = yaml.safe_load(Path(conf).read_text())
    agent = next(x for x in am["receivers"] if x["name"] == "llmp-monitor-agent")
    assert agent["webhook_configs"][0]["url"] == ms.MonitoringConfig().alertmanager.webhook_url   # one default, two places


# --- the children never outlive the parent --------------------------------------------------------------------

PARENT = """
import sys, time
from llm_platform.core import ChildProcesses
from llm_platform.monitor.stack import MonitoringConfig, MonitoringStack
with ChildProcesses() as kids:                       # what `make start-monitoring` does
    stack = kids.add(MonitoringStack(MonitoringConfig.model_validate_json(sys.argv[1]), routes={"models": {}}))
    stack.start()
    print("READY", stack.prometheus.proc.pid, stack.alertmanager.proc.pid, flush=True)
    while True:
        time.sleep(1)
print("STOPPED", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("how", ["SIGTERM twice", "SIGKILL"])
def test_prometheus_and_alertmanager_stop_with_their_parent(tmp_path, how):
    import os
    import signal
    import sys
    cfg = ms.MonitoringConfig(work_dir=str(tmp_path), gateway_url=f"http://127.0.0.1:{free_port()}", agent_url=None,
                              prometheus={"port": free_port(), "data_dir": str(tmp_path / "tsdb")},
                              alertmanager={"port": free_port(), "data_dir": str(tmp_path / "am")})
    parent = subprocess.Popen([sys.executable, "-c", PARENT, cfg.model_dump_json()], cwd=ROOT, start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        line = parent.stdout.readline().split()
        assert line[:1] == ["READY"], line
        pids = [int(x) for x in line[1:]]
        assert len(pids) == 2 and all(map(_alive, pids))
        if how == "SIGKILL":
            parent.kill()
            parent.wait(5)
        else:
            for _ in range(2):                       # the second arrives while the first stop is under way
                os.killpg(parent.pid, signal.SIGTERM)
                time.sleep(0.2)
            out, _ = parent.communicate(timeout=30)
            assert parent.returncode == 0 and "STOPPED" in out, (parent.returncode, out)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(_alive, pids)):
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "prometheus/alertmanager outlived their parent"
    finally:
        for pid in [parent.pid, *pids]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_targets_follow_the_routes_through_a_swap(tmp_path):
    "The stack re-reads routes.json: after a swap Prometheus scrapes the replica under its new version label."
    from llm_platform.core import write_json
    from llm_platform.serve.manager import ROUTES
    url = f"http://127.0.0.1:{free_port()}/v1"                 # nothing listens: the target is down, still labelled

    def routes(version: str) -> dict:
        return {"generation": 1, "models": {MODEL: {"version": version, "replicas": [{"url": url, "version": version}]}}}
    write_json(tmp_path / ROUTES, routes("1"))
    cfg = ms.MonitoringConfig(work_dir=str(tmp_path / "mon"), state_dir=str(tmp_path), agent_url=None,
                              gateway_url=f"http://127.0.0.1:{free_port()}", sync_interval_s=0.2,
                              prometheus={"port": free_port(), "scrape_interval": "1s", "data_dir": str(tmp_path / "tsdb")},
                              alertmanager={"enabled": False})
    with ms.MonitoringStack(cfg) as mon:

        def versions() -> list[str]:
            targets = httpx.get(f"{mon.prometheus_url}/api/v1/targets").json()["data"]["activeTargets"]
            return [t["labels"].get("version") for t in targets if t["labels"]["job"] == "model_servers"]
        assert wait_for(lambda: versions() == ["1"] and versions(), what="the v1 target")
        write_json(tmp_path / ROUTES, routes("2"))              # what the model manager writes on a swap
        assert wait_for(lambda: versions() == ["2"] and versions(), timeout_s=20, what="the v2 target")
        assert mon.alertmanager is None
