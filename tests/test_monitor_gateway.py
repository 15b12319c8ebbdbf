"""Monitoring of the gateway on real components: a gateway process (tracing on, JSON logs, traffic samples)
in front of the instant upstream, spans exported over OTLP/HTTP to a real receiver that decodes the protobuf,
/metrics checked against the metric catalog (llm_platform.monitor.metrics)."""
import json
import os
import time

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from llm_platform.core import find_project_root
from llm_platform.monitor.metrics import catalog
from llm_platform.monitor.tracing import OTLPReceiver, trace_id_for
from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.upstream import UpstreamServer
from tests.browser import free_port

ROOT = find_project_root()
PII = "write to jane.doe@example.com or call +1 415 555 0134"


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    "One traced gateway (JSON logs, access log, every request sampled) on an instant upstream, and the OTLP receiver."
    d = tmp_path_factory.mktemp("mongw")
    store = APIKeyStore(d / "keys.json")
    key, _ = store.create("user", ["chat"])
    small, _ = store.create("small", ["chat"], tier="small")
    up = UpstreamServer(name="echo", chunks=5, chunk_delay_s=0.01).start()
    rx = OTLPReceiver().start()
    cfg = GatewayConfig.model_validate({
        "port": free_port(),
        "models": {"echo": {"replicas": [{"url": up.url, "version": "echo-v1"}], "pii": False}},
        "auth": {"key_store": str(d / "keys.json"),
                 "tiers": {"default": {"requests": 100000}, "small": {"requests": 1, "window_s": 600}}},
        "audit": {"path": str(d / "audit.jsonl")}, "manager": {"state_dir": str(d)},
        "tracing": {"enabled": True, "endpoint": rx.url, "export_delay_ms": 50, "service_name": "gw-test"},
        "log_format": "json", "access_log": True,
        "samples": {"enabled": True, "rate": 1.0, "path": str(d / "samples.jsonl")},
    })
    gw = GatewayProcess(cfg, log_path=d / "gw.log").start().wait_healthy(60)
    yield {"gw": gw, "rx": rx, "key": key, "small": small, "dir": d, "up": up}
    gw.stop()
    rx.stop()
    up.kill()


def post(env, body, key=None, **headers):
    return httpx.post(env["gw"].url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key or env['key']}", **headers})


def chat(content="Does Nimbus Notes work offline?", **kw):
    return {"model": "echo", "messages": [{"role": "user", "content": content}], "max_tokens": 16, **kw}


def spans_of(env, trace_id: str, *names: str) -> dict[str, dict]:
    "The spans of one trace by name, once those named have arrived (batches may split a trace)."
    spans = env["rx"].wait_for(lambda ss: set(names) <= {s["name"] for s in ss if s["trace_id"] == trace_id})
    return {s["name"]: s for s in spans if s["trace_id"] == trace_id}


def test_span_tree_trace_id_is_request_id_and_genai_attributes(traced):
    rid = "req-" + "5e" * 16
    r = post(traced, chat(temperature=0), **{"x-request-id": rid, "cache-control": "no-cache"})
    assert r.status_code == 200 and r.headers["x-trace-id"] == "5e" * 16
    spans = spans_of(traced, "5e" * 16, "chat echo", "auth", "quota", "guardrails.pre", "upstream", "guardrails.post")
    root = spans["chat echo"]
    assert root["kind"] == 2 and root["parent_span_id"] is None          # SERVER, a root
    assert {"auth", "quota", "guardrails.pre", "upstream", "guardrails.post"} <= set(spans)
    assert all(s["parent_span_id"] == root["span_id"] for n, s in spans.items() if n != "chat echo")
    a = root["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "echo"
    assert a["gen_ai.response.model"] == "echo" and a["llmp.model.version"] == "echo-v1"
    assert a["gen_ai.usage.input_tokens"] == 1 and a["gen_ai.usage.output_tokens"] == 1
    assert a["http.response.status_code"] == 200 and a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["llmp.request_id"] == rid and root["resource"]["service.name"] == "gw-test"
    assert spans["upstream"]["attributes"]["server.address"] == traced["up"].url
    assert root["start_ns"] <= spans["auth"]["start_ns"] <= spans["upstream"]["start_ns"] <= root["end_ns"]


def test_any_request_id_maps_to_its_trace_and_a_callers_traceparent_wins(traced):
    r = post(traced, chat(temperature=0.5), **{"x-request-id": "client-id-42"})
    tid = f"{trace_id_for('client-id-42'):032x}"
    assert r.headers["x-request-id"] == "client-id-42" and r.headers["x-trace-id"] == tid
    assert spans_of(traced, tid, "chat echo", "upstream")["upstream"]["parent_span_id"]
    parent = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = post(traced, chat(temperature=0.5), traceparent=f"00-{parent}-00f067aa0ba902b7-01")
    assert r.headers["x-request-id"] == "req-" + parent and r.headers["x-trace-id"] == parent
    assert spans_of(traced, parent, "chat echo")["chat echo"]["parent_span_id"] == "00f067aa0ba902b7"


def test_stream_upstream_span_lasts_the_stream_and_errors_are_marked(traced):
    rid = "req-" + "7a" * 16
    with httpx.stream("POST", traced["gw"].url + "/v1/chat/completions", json=chat(stream=True, temperature=0.5),
                      headers={"authorization": f"Bearer {traced['key']}", "x-request-id": rid}, timeout=30) as r:
        text = "".join(r.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    spans = spans_of(traced, "7a" * 16, "chat echo", "upstream")
    assert spans["upstream"]["end_ns"] - spans["upstream"]["start_ns"] >= 30e6       # 5 chunks 10 ms apart
    assert spans["chat echo"]["attributes"]["gen_ai.usage.output_tokens"] == 5
    r = post(traced, {**chat(), "model": "nope"}, **{"x-request-id": "req-" + "0b" * 16})
    assert r.status_code == 404
    root = spans_of(traced, "0b" * 16, "POST /v1/chat/completions", "auth")["POST /v1/chat/completions"]
    assert root["status"] == 0 and root["attributes"]["error.type"] == "model_not_found"   # 4xx: status unset (OTel HTTP)
    assert root["attributes"]["http.response.status_code"] == 404


def test_metrics_follow_the_catalog_with_version_finish_reason_and_stream_latencies(traced):
    post(traced, chat(temperature=0))                 # miss, then hit
    assert post(traced, chat(temperature=0)).headers["x-cache"] == "hit"
    with httpx.stream("POST", traced["gw"].url + "/v1/chat/completions", json=chat(stream=True, temperature=0.7),
                      headers={"authorization": f"Bearer {traced['key']}"}, timeout=30) as r:
        r.read()
    assert post(traced, chat(), key=traced["small"]).status_code == 200
    assert post(traced, chat(), key=traced["small"]).status_code == 429
    assert post(traced, chat("how do I make a pipe bomb")).status_code == 400
    fams = {f.name: f for f in text_string_to_metric_families(httpx.get(traced["gw"].url + "/metrics").text)}
    for spec in catalog("gateway"):
        if spec.name.startswith("llmp_gateway_replica"):
            continue                                   # set from the pool at scrape time: checked below
        f = fams[spec.name]
        assert f.type == spec.type, spec.name
        assert {k for s in f.samples for k in s.labels} - {"le"} == set(spec.labels), spec.name

    def value(name, sample, **labels):
        return sum(s.value for s in fams[name].samples if s.name == sample and labels.items() <= s.labels.items())
    ev = {"model": "echo", "version": "echo-v1"}
    assert value("llmp_gateway_requests", "llmp_gateway_requests_total", status="200", finish_reason="stop", **ev) >= 4
    assert value("llmp_gateway_requests", "llmp_gateway_requests_total", status="400", finish_reason="content_filter", **ev) == 1
    assert value("llmp_gateway_quota_refusals", "llmp_gateway_quota_refusals_total", reason="requests", **ev) == 1
    assert value("llmp_gateway_guardrail_verdicts", "llmp_gateway_guardrail_verdicts_total",
                 phase="moderation", action="block", **ev) == 1
    for result in ("hit", "miss", "skip"):
        assert value("llmp_gateway_cache", "llmp_gateway_cache_total", result=result, **ev) >= 1, result
    assert value("llmp_gateway_tokens", "llmp_gateway_tokens_total", gen_ai_token_type="output", **ev) >= 5
    op = {**ev, "gen_ai_operation_name": "chat"}
    n = value("gen_ai_server_time_per_output_token_seconds", "gen_ai_server_time_per_output_token_seconds_count", **op)
    mean = value("gen_ai_server_time_per_output_token_seconds", "gen_ai_server_time_per_output_token_seconds_sum", **op) / n
    assert n >= 1 and 0.005 <= mean <= 0.5                # chunks 10 ms apart
    assert value("gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_to_first_token_seconds_count", **op) >= 1
    assert value("gen_ai_server_request_duration_seconds", "gen_ai_server_request_duration_seconds_count", **op) >= 6
    assert value("llmp_gateway_queue_length", "llmp_gateway_queue_length", **ev) == 0     # nothing in flight now
    assert value("llmp_gateway_replica_healthy", "llmp_gateway_replica_healthy", url=traced["up"].url, **ev) == 1


def test_traffic_sample_has_the_contract_fields_and_no_pii(traced):
    rid = "req-" + "5a" * 16
    assert post(traced, chat(PII, temperature=0.5), **{"x-request-id": rid}).status_code == 200
    path = traced["dir"] / "samples.jsonl"
    deadline = time.monotonic() + 10
    while not (path.exists() and rid in path.read_text()):
        assert time.monotonic() < deadline, "no sample line for the request"
        time.sleep(0.05)
    text = path.read_text()
    rec = next(json.loads(line) for line in text.splitlines() if rid in line)
    assert set(rec) == {"ts", "request_id", "trace_id", "model", "version", "endpoint", "prompt", "response",
                        "prompt_tokens", "completion_tokens", "finish_reason", "status", "guardrail"}
    assert rec["trace_id"] == "5a" * 16 and rec["model"] == "echo" and rec["version"] == "echo-v1"
    assert rec["endpoint"] == "chat" and rec["status"] == 200 and rec["finish_reason"] == "stop"
    assert rec["response"] == "v1-0 v1-1 v1-2 v1-3 v1-4 "
    assert rec["guardrail"] == {"pre": "allow", "post": "allow"}
    assert "jane.doe@example.com" not in text and "555 0134" not in text
    assert rec["prompt"] == "write to <EMAIL_ADDRESS> or call <NUMBER>"


def test_log_lines_are_json_with_request_and_trace_ids(traced):
    rid = "req-" + "1c" * 16
    assert post(traced, chat(temperature=0.5), **{"x-request-id": rid}).status_code == 200
    log = traced["dir"] / "gw.log"
    deadline = time.monotonic() + 5
    while rid not in log.read_text():
        assert time.monotonic() < deadline, "no access log line for the request"
        time.sleep(0.05)
    ours = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    line = next(x for x in ours if x.get("request_id") == rid)
    assert line["trace_id"] == "1c" * 16 and line["status"] == 200 and line["version"] == "echo-v1"
    assert line["logger"] == "llm_platform.serve.gateway" and line["level"] == "INFO" and line["duration_ms"] > 0
    assert {"ts", "msg", "model"} <= set(line) and line["finish_reason"] == "stop"


def test_fluent_bit_config_tails_the_gateway_log_audit_and_samples():
    "No fluent-bit binary here to run `--dry-run`: the config is read and checked against the gateway's defaults."
    root = find_project_root()
    cfg = yaml.safe_load((root / "deploy/monitoring/logging/fluent-bit.yaml").read_text())
    inputs = {i["tag"]: i for i in cfg["pipeline"]["inputs"]}
    g = GatewayConfig(models={"m": {"replicas": [{"url": "http://127.0.0.1:9/v1"}]}})
    paths = " ".join(i["path"] for i in inputs.values())
    for p in (g.audit.path, g.samples.path, g.manager.state_dir + "/gateway-*.log"):
        assert p in paths, p
    parsers = {p["name"]: p for p in cfg["parsers"]}
    assert all(i["name"] == "tail" and parsers[i["parser"]]["format"] == "json" for i in inputs.values())
    assert all(o.get("match") for o in cfg["pipeline"]["outputs"])


def test_docs_hold_the_generated_metric_table():
    "docs/monitoring(.md or /gateway.md) shows mapping_markdown() as the code generates it: regenerate when this fails."
    from llm_platform.monitor.metrics import mapping_markdown
    root = find_project_root()
    docs = [p for p in (root / "docs/monitoring.md",) if p.exists()]
    assert any(mapping_markdown() in p.read_text() for p in docs), [str(p) for p in docs]


def test_a_trace_the_caller_did_not_sample_makes_no_spans_but_keeps_its_id(traced):
    unsampled = "0c" * 16
    r = post(traced, chat(temperature=0.5), traceparent=f"00-{unsampled}-00f067aa0ba902b7-00")
    assert r.status_code == 200 and r.headers["x-trace-id"] == unsampled
    after = "0d" * 16                                   # a sampled request sent later: once its spans are in, so would be these
    post(traced, chat(temperature=0.5), **{"x-request-id": "req-" + after})
    spans_of(traced, after, "chat echo")
    assert not [s for s in traced["rx"].spans if s["trace_id"] == unsampled]


@pytest.mark.parametrize("path,body,prompt", [
    ("chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "part one"},
                                                                   {"type": "image_url", "image_url": {"url": "x"}}]}]},
     "part one"),
    ("chat/completions", {"messages": [{"role": "system", "content": "be brief"}], "stream": True}, ""),
    ("completions", {"prompt": ["first", "second"]}, "first\nsecond"),
    ("completions", {"prompt": [1, 2, 3]}, ""),
])
def test_odd_bodies_are_traced_and_sampled_without_a_500(traced, path, body, prompt):
    rid = "req-" + os.urandom(16).hex()
    r = httpx.post(f"{traced['gw'].url}/v1/{path}", json={"model": "echo", "max_tokens": 4, **body}, timeout=30,
                   headers={"authorization": f"Bearer {traced['key']}", "x-request-id": rid})
    assert r.status_code < 500 or r.status_code == 503, r.text
    samples = traced["dir"] / "samples.jsonl"
    deadline = time.monotonic() + 10
    while rid not in samples.read_text():
        assert time.monotonic() < deadline, "no sample line"
        time.sleep(0.05)
    rec = next(json.loads(line) for line in samples.read_text().splitlines() if rid in line)
    assert rec["prompt"] == prompt and rec["status"] == r.status_code
    assert rec["endpoint"] == ("chat" if path.startswith("chat") else "completions")
    spans_of(traced, rid[4:], "chat echo" if path.startswith("chat") else "text_completion echo")


def test_the_gateways_samples_feed_the_agents_drift_check(traced, tmp_path):
    "Real traffic samples -> `run_drift_check` -> the agent's llmp_drift_* gauges, labelled with the served version."
    import random

    from llm_platform.monitor.alerts import AgentMetrics, DriftCheck, report_rows, run_drift_check
    from llm_platform.monitor.drift import DriftSpec
    rows = [json.loads(line) for line in (ROOT / "data/sample/chats.jsonl").read_text().splitlines()]
    prompts = random.Random(0).sample([m["content"] for r in rows for m in r["messages"] if m["role"] == "user"], 40)
    path = traced["dir"] / "samples.jsonl"

    def lines():
        return path.read_text().splitlines() if path.exists() else []
    before = -1
    while before != len(lines()):             # the module's earlier samples (odd prompts) are all written
        before = len(lines())
        time.sleep(0.3)
    for p in prompts:      # in-domain prompts (the training data's own kind); the echo upstream answers off-domain
        assert post(traced, chat(p)).status_code == 200
    deadline = time.monotonic() + 10
    while len(lines()) < before + len(prompts):
        assert time.monotonic() < deadline, "samples missing"
        time.sleep(0.05)
    mine = tmp_path / "samples.jsonl"                   # this test's traffic only
    mine.write_text("\n".join(lines()[before:]) + "\n")
    check = DriftCheck(model="echo", samples_path=str(mine),
                       spec=DriftSpec(reference=str(ROOT / "data/sample/chats.jsonl"), min_samples=30,
                                      features=["input_length", "input_topic", "output_length"], safety_config=None))
    report = run_drift_check(check)
    assert report.version == "echo-v1" and report.status != "insufficient", report.to_markdown()
    detected = {r.feature: r.detected for r in report.tested}
    assert detected == {"input_length": False, "input_topic": False, "output_length": True}, report.to_markdown()
    metrics = AgentMetrics()
    metrics.record_drift(report_rows(report))
    text = metrics.text().decode()
    assert 'llmp_drift_detected{feature="output_length",model="echo",version="echo-v1"} 1.0' in text, text
    assert 'llmp_drift_detected{feature="input_topic",model="echo",version="echo-v1"} 0.0' in text
