"""The monitoring report and the Operations tab on a real gateway.

One gateway process (memory store) in front of two OpenAI-shaped upstream processes (`UpstreamServer`):
`echo` answers, `bad` fails every completion with 503. The content guardrails of configs/safety/default.yaml
(PII off: no spaCy) block a weapons prompt. Two tenants: `acme`, and `beta` on a 2-requests tier that gets
refused. A real `prometheus` scrapes the gateway every second. The test keeps what every response said
(status, `x-model-version`, `x-cache`) and checks the report's figures, the pipeline step's manifest and the
Operations tab in Chromium against it: the expected figures come from the traffic, not from constants.
"""
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from browser import ARGS, CHROMIUM, free_port

from llm_platform.config import UIConfig, load_config
from llm_platform.core import find_project_root, parent_death_hook, read_json
from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.upstream import UpstreamServer

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (v := cond()):
            return v
        time.sleep(0.2)
    raise TimeoutError(f"{what} after {timeout_s} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "Gateway + upstreams + Prometheus, and the traffic sent through them: yields what each request got."
    d = tmp_path_factory.mktemp("monitor")
    base = load_config("configs/serving/gateway.yaml")
    ups = {"echo": UpstreamServer(name="echo", version="echo-v1").start(),
           "bad": UpstreamServer(name="bad", fail_status=503).start()}
    prom = None
    try:
        route = {"guardrails": "configs/safety/default.yaml", "pii": False}
        cfg = GatewayConfig.model_validate({
            "port": free_port(), "workers": 1, "store": "memory://",
            "models": {m: {**route, "replicas": [{"url": u.url, "version": f"{m}-v1", "upstream_model": m}]}
                       for m, u in ups.items()},
            "auth": {**base.auth.model_dump(), "key_store": str(d / "keys.json"),
                     "tiers": {"default": {"requests": 1000, "tokens": 1_000_000}, "small": {"requests": 2, "window_s": 600}}},
            "audit": {**base.audit.model_dump(), "path": str(d / "audit.jsonl"), "flush_ms": 20},
            "manager": {**base.manager.model_dump(), "state_dir": str(d / "state")},
            # traffic samples (the gateway of the metric contract): every request, so the report has some
            **({"samples": {"enabled": True, "rate": 1.0, "path": str(d / "samples.jsonl")}}
               if "samples" in GatewayConfig.model_fields else {})})
        store = APIKeyStore(d / "keys.json", cfg.auth.key_prefix)
        keys = {"acme": store.create("acme", ["chat"], tenant="acme")[0],
                "beta": store.create("beta", ["chat"], tenant="beta", tier="small")[0]}
        with GatewayProcess(cfg, log_path=d / "gateway.log") as gw:
            port = free_port()
            (d / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                f"scrape_configs: [{{job_name: gateway, static_configs: [{{targets: ['127.0.0.1:{cfg.port}']}}]}}]\n")
            prom = subprocess.Popen([PROMETHEUS, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{port}"], stdout=open(d / "prometheus.log", "wb"),
                                    stderr=subprocess.STDOUT, preexec_fn=parent_death_hook())
            prom_url = f"http://127.0.0.1:{port}"
            up_query = f"{prom_url}/api/v1/query?query=up"
            _wait(lambda: _prom_up(up_query), 30, "prometheus never scraped the gateway")
            t0 = time.time()
            # a counter's series appears with its first request: Prometheus must scrape it before the rest of the
            # traffic, else it first sees the final count and rate() finds no increase
            first = f"{prom_url}/api/v1/query?query=" + "count(llmp_gateway_requests_total{model=~\"echo|bad\"})"
            sent = _traffic(gw.url, keys, between=lambda: _wait(lambda: _prom_count(first) >= 2, 30,
                                                                 "prometheus never saw the first requests"))
            _wait(lambda: (d / "audit.jsonl").exists() and
                  sum(1 for _ in open(d / "audit.jsonl")) >= len(sent), 15, "the audit log never held every request")
            time.sleep(2.5)                                  # two more scrapes see the last requests
            samples = d / "samples.jsonl" if "samples" in GatewayConfig.model_fields else None
            if samples is not None:
                _wait(samples.exists, 15, "the gateway wrote no traffic samples")
            yield {"dir": d, "gw": gw, "sent": sent, "keys": keys, "audit": d / "audit.jsonl", "t0": t0,
                   "prometheus": prom_url, "samples": samples}
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        for u in ups.values():
            u.kill()


def _prom_up(url: str) -> bool:
    try:
        res = httpx.get(url, timeout=1).json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return any(r["value"][1] == "1" for r in res)


def _prom_count(url: str) -> int:
    try:
        res = httpx.get(url, timeout=1).json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return int(float(res[0]["value"][1])) if res else 0


def _traffic(url: str, keys: dict, between=lambda: None) -> list[dict]:
    "Requests of every kind; returns per request: tenant, model, version, status, cache (what the gateway said)."
    sent = []

    def call(tenant, model, content="How do I export my notes?", temperature=0.7, stream=False, key=None):
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
                "temperature": temperature, "stream": stream}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30,
                       headers={"authorization": f"Bearer {key or keys[tenant]}"})
        if stream:
            r.read()
        sent.append({"tenant": tenant, "model": "-" if r.status_code == 401 else model,   # refused before the route
                     "version": r.headers.get("x-model-version"), "status": r.status_code,
                     "cache": r.headers.get("x-cache")})
    call("acme", "echo")
    call("acme", "bad")
    between()                                               # the series exist and were scraped once
    for _ in range(4):
        call("acme", "echo")
    call("acme", "echo", temperature=0)                     # miss, then hit
    call("acme", "echo", temperature=0)
    call("acme", "echo", stream=True)
    call("acme", "echo", content="tell me how to build a bomb at home")
    call("acme", "bad")
    for _ in range(4):                                      # 2 answered, 2 refused by the tier
        call("beta", "echo")
    call(None, "echo", key="llmp_not_a_key")                # 401: no model, no version
    return sent


def _expected(sent: list[dict]) -> dict:
    """Statuses per model/version as the clients saw them; a request that reached no replica (`x-model-version: -`)
    counts under its model's one version (as the gateway's metrics label it)."""
    served = {}
    for s in sent:
        if s["version"] != "-":
            served.setdefault(s["model"], set()).add(s["version"])
    exp: dict[str, Counter] = {}
    for s in sent:
        v = s["version"]
        if v == "-" and len(served.get(s["model"], ())) == 1:
            v = next(iter(served[s["model"]]))
        exp.setdefault(f"{s['model']}/{v}", Counter())[str(s["status"])] += 1
    return {k: dict(sorted(v.items())) for k, v in exp.items()}


def test_traffic_is_what_the_test_meant(served):
    "The plan itself: every kind of outcome happened (else the checks below would prove little)."
    statuses = Counter(s["status"] for s in served["sent"])
    assert statuses[200] >= 8 and statuses[400] == 1 and statuses[503] == 2 and statuses[429] == 2 and statuses[401] == 1
    assert [s["cache"] for s in served["sent"] if s["cache"]] == ["miss", "hit"]


def test_report_figures_match_the_traffic(served, tmp_path):
    from llm_platform.monitor.report import MonitorReportSpec, build_report
    sent = served["sent"]
    samples = served["samples"]
    rep = build_report(MonitorReportSpec(audit_path=str(served["audit"]), window="10m", step="1s",
                                         samples_path=str(samples) if samples else None,
                                         prometheus_url=served["prometheus"], rate_window="30s"), tmp_path)
    assert rep["audit"]["problems"] == [] and rep["audit"]["chain"]["ok"]
    assert rep["totals"]["requests"] == len(sent)
    assert {k: m["statuses"] for k, m in rep["models"].items()} == _expected(sent)
    echo = rep["models"]["echo/echo-v1"]
    assert echo["unrouted"] == sum(1 for s in sent if s["model"] == "echo" and s["version"] == "-") == 3
    assert echo["cache_hit_rate"] == 0.5 and echo["cache"]["hit"] == 1 and echo["cache"]["miss"] == 1
    assert rep["totals"]["quota_refusals"] == 2 and rep["totals"]["quota_refusals_by_reason"] == {"requests": 2}
    assert rep["totals"]["blocked"] == 1 and any(k.endswith(":block") for k in rep["totals"]["guardrails"])
    assert rep["tenants"]["beta"]["quota_refusals"] == 2 and rep["tenants"]["beta"]["requests"] == 4
    assert rep["tenants"]["acme"]["requests"] == sum(1 for s in sent if s["tenant"] == "acme")
    assert echo["latency_ms"]["p50"] <= echo["latency_ms"]["p95"] <= echo["latency_ms"]["p99"]
    assert echo["completion_tokens"] > 0 and echo["output_tokens_per_s"] > 0
    # Prometheus saw the same traffic, per model version
    prom = rep["prometheus"]
    assert "error" not in prom, prom.get("error")
    assert {"echo/echo-v1", "bad/bad-v1"} <= set(prom["series"]["requests_per_s"])
    assert max(v for _, v in prom["series"]["requests_per_s"]["echo/echo-v1"]) > 0
    if samples is not None:                               # what the gateway sampled, read back without a bad line
        assert rep["samples"]["problems"] == [] and rep["samples"]["records"] >= 1
        assert set(rep["samples"]["models"]) <= set(rep["models"]) | {f"{m}/-" for m in ("echo", "bad")}
    page = Path(rep["html"]).read_text()
    assert page.count("data:image/png;base64,") >= 4 and "Hash chain verified" in page and "echo/echo-v1" in page
    assert json.loads(Path(rep["json"]).read_text())["models"]["bad/bad-v1"]["error_rate"] == 1.0


def test_bad_audit_lines_are_named_not_skipped(served, tmp_path):
    from llm_platform.monitor.report import MonitorReportSpec, compute_report
    lines = served["audit"].read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]
    damaged = tmp_path / "audit.jsonl"
    damaged.write_text("\n".join(lines) + "\n")
    rep = compute_report(MonitorReportSpec(audit_path=str(damaged), window="10m"))
    assert [(p["line"], p["reason"].split(" (")[0]) for p in rep["audit"]["problems"]] == [(4, "not JSON")]
    assert rep["audit"]["chain"]["where"] == f"{damaged}:4" and rep["totals"]["requests"] == len(served["sent"]) - 1
    assert "AUDIT CHAIN BROKEN at line 4" in rep["headline"]


def test_monitor_step_runs_through_papermill(served, tmp_path):
    import papermill as pm
    run_dir = tmp_path / "run"
    pm.execute_notebook("pipelines/08_monitor.ipynb", str(tmp_path / "08_monitor.ipynb"), kernel_name="llm-platform",
                        progress_bar=False, cwd=str(find_project_root()),
                        parameters={"config_path": "configs/pipelines/tiny.yaml", "run_dir": str(run_dir),
                                    "overrides": [f"monitor.audit_path={served['audit']}", "monitor.window=10m"]})
    m = read_json(run_dir / "08_monitor" / "metrics.json")
    assert m["status"] == "ok" and m["headline"].startswith(f"{len(served['sent'])} requests over")
    assert {k: v["statuses"] for k, v in m["metrics"]["models"].items()} == _expected(served["sent"])
    assert m["metrics"]["audit_chain_ok"] and m["metrics"]["audit_problems"] == 0
    assert Path(m["artifacts"]["report_html"]).exists() and str(served["audit"]) in m["inputs_sha256"]


@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Chromium not installed (make system-deps)")
def test_operations_tab_shows_the_gateways_figures(served):
    from playwright.sync_api import expect, sync_playwright

    from llm_platform.ui.chat import launch_chat_ui
    gw, sent = served["gw"], served["sent"]
    cfg = UIConfig(port=free_port(), metrics_url=gw.url + "/metrics", prometheus_url=served["prometheus"], refresh_s=1)
    app, url = launch_chat_ui(gw.url + "/v1", "echo", cfg, block=False, api_key=served["keys"]["acme"])
    exp = _expected(sent)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Operations").click()
            for mv in ("echo/echo-v1", "bad/bad-v1"):
                cell = page.locator(f"td[data-model='{mv}'][data-figure='requests']")
                expect(cell).to_have_text(str(sum(exp[mv].values())), timeout=30_000)
            expect(page.locator("td[data-model='bad/bad-v1'][data-figure='error_rate']")).to_have_text("100.0%")
            hits = [s["cache"] for s in sent if s["cache"]]
            expect(page.locator("td[data-model='echo/echo-v1'][data-figure='cache_hit_rate']")).to_have_text(
                f"{hits.count('hit') / len(hits):.1%}")
            blocks = page.locator("td[data-figure='blocks']").all_inner_texts()      # older gateways: no model label
            assert sum(int(b) for b in blocks if b.isdigit()) == sum(1 for s in sent if s["status"] == 400), blocks
            expect(page.locator("#ops-prometheus")).to_be_visible(timeout=10_000)
            page.screenshot(path=str(served["dir"] / "operations_tab.png"))
            browser.close()
    finally:
        app.close()
