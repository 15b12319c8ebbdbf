"""The gateway on real components: vLLM on the tiny model, a real redis-server, and two gateway
processes sharing it. The `openai` client talks to the gateway unchanged."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import jwt
import openai
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from llm_platform.data.chat import render_chat
from llm_platform.security.audit import verify_log
from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.upstream import UpstreamServer

MESSAGES = [{"role": "user", "content": "Does Nimbus Notes work offline?"}]
HS_SECRET = "test-hs256-secret-of-enough-length-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory, vllm_server, redis_server):
    "Keys, an echo upstream and the gateway config shared by the module's two gateway processes."
    d = tmp_path_factory.mktemp("gateway")
    store = APIKeyStore(d / "keys.json")
    keys = {}
    keys["user"], _ = store.create("user", ["chat"], tenant="acme")
    keys["admin"], _ = store.create("ops", ["admin", "chat"])
    keys["scoped"], _ = store.create("scoped", ["chat"], models=["echo"])
    keys["small"], keys["small_rec"] = store.create("small", ["chat"], tier="small")
    keys["tok"], keys["tok_rec"] = store.create("tok", ["chat"], tier="tok")
    keys["revoked"], rec = store.create("old", ["chat"])
    store.revoke(rec.id)
    keys["expired"], _ = store.create("brief", ["chat"], ttl_days=1e-9)
    echo = UpstreamServer(name="echo").start()
    cfg = {
        "store": redis_server.url,
        "models": {
            "tiny": {"replicas": [{"url": vllm_server.base_url, "version": "tiny-v1",
                                   "upstream_model": vllm_server.served_model_name}]},
            "echo": {"replicas": [{"url": echo.url, "version": "echo-v1"}], "pii": False},
        },
        "auth": {"key_store": str(d / "keys.json"), "jwt_keys": [{"kid": "hs1", "secret_env": "GW_TEST_HS"}],
                 "tiers": {"default": {"requests": 100000, "tokens": 10000000},
                           "small": {"requests": 20, "window_s": 120},
                           "tok": {"tokens": 100, "window_s": 120}}},
        "audit": {"path": str(d / "audit.jsonl")},
        "manager": {"state_dir": str(d / "state")},
    }
    yield {"dir": d, "keys": keys, "cfg": cfg, "echo": echo, "vllm": vllm_server}
    echo.kill()


@pytest.fixture(scope="module")
def gateways(env, monkeypatch_module):
    "Two gateway processes on their own ports, sharing the Redis store, the key store and the audit log."
    monkeypatch_module.setenv("GW_TEST_HS", HS_SECRET)
    procs = [GatewayProcess(GatewayConfig.model_validate({**env["cfg"], "port": free_port()}),
                            log_path=env["dir"] / f"gw{i}.log") for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.wait_healthy(120)
    yield procs
    for p in procs:
        p.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def client(gw, key, **kw) -> OpenAI:
    return OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, **kw)


# ---- the OpenAI API through the gateway ---------------------------------------------------------
def test_chat_stream_and_models_through_the_openai_client(gateways, env):
    c = client(gateways[0], env["keys"]["user"])
    assert {m.id for m in c.models.list().data} == {"tiny", "echo"}
    raw = c.chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0,
                                                      extra_headers={"cache-control": "no-cache"})
    r = raw.parse()
    assert raw.headers["x-model-version"] == "tiny-v1" and raw.headers["x-request-id"].startswith("req-")
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens > 0
    assert "x-ratelimit-remaining-requests" in raw.headers
    kw = dict(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **kw,
                       extra_headers={"cache-control": "no-cache"}) if ch.choices)
    assert streamed == r.choices[0].message.content
    comp = c.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
    assert comp.choices[0].text is not None and comp.usage.completion_tokens > 0


def test_template_parity_through_the_gateway(gateways, env):
    "The prompt vLLM builds behind the gateway is still the one training used."
    tok = AutoTokenizer.from_pretrained(env["vllm"].model_dir)
    ours = tok(render_chat(tok, MESSAGES, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    r = client(gateways[1], env["keys"]["user"]).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)
    assert r.usage.prompt_tokens == len(ours)


def test_client_request_id_is_echoed_and_unsafe_ones_replaced(gateways, env):
    h = {"authorization": f"Bearer {env['keys']['user']}"}
    r = httpx.get(gateways[0].url + "/v1/models", headers={**h, "x-request-id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    # a raw request with a header value that tries to smuggle a second header line
    with socket.create_connection(("127.0.0.1", gateways[0].cfg.port)) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + env["keys"]["user"].encode()
                  + b"\r\nX-Request-Id: a\"b<script>\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n")[0].decode().lower()
    assert "x-request-id: req-" in head and "<script>" not in head


def test_errors_are_openai_shaped(gateways, env):
    c = client(gateways[0], env["keys"]["user"])
    with pytest.raises(openai.NotFoundError, match="not served"):
        c.chat.completions.create(model="nope", messages=MESSAGES, max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        c.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=100000)
    url, h = gateways[0].url + "/v1/chat/completions", {"authorization": f"Bearer {env['keys']['user']}"}
    r = httpx.post(url, headers=h, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json" and r.headers["x-request-id"]
    r = httpx.post(url, headers=h, json={"model": "tiny", "messages": "hi"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(url, headers=h, content=b"x" * 1_100_000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = httpx.post(gateways[0].url + "/v1/completions", headers=h, json={"model": "tiny", "prompt": [1, 2, 3]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "prompt_not_text"   # guardrails cannot read ids
    r = httpx.get(gateways[0].url + "/v1/nowhere")
    assert r.status_code == 404 and "error" in r.json()


# ---- attacks on auth ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["missing", "wrong", "revoked", "expired", "tampered"])
def test_bad_api_keys_are_refused(gateways, env, which):
    key = {"missing": None, "wrong": "llmp_000000000000_" + "A" * 43, "revoked": env["keys"]["revoked"],
           "expired": env["keys"]["expired"], "tampered": env["keys"]["user"][:-1] + "x"}[which]
    h = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(gateways[0].url + "/v1/chat/completions", headers=h,
                   json={"model": "echo", "messages": MESSAGES, "max_tokens": 2})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert key is None or key not in r.text


def _token(**over):
    now = int(time.time())
    claims = {"iss": "llm-platform", "aud": "llm-platform-gateway", "sub": "svc-1", "iat": now, "nbf": now,
              "exp": now + 300, "scope": "chat", **over}
    return jwt.encode(claims, HS_SECRET, algorithm="HS256", headers={"kid": "hs1"})


def test_jwt_accepted_and_attacks_refused(gateways, env):
    url = gateways[1].url + "/v1/chat/completions"
    body = {"model": "echo", "messages": MESSAGES, "max_tokens": 2}
    assert httpx.post(url, headers={"authorization": f"Bearer {_token()}"}, json=body).status_code == 200
    good = _token()
    head, payload, sig = good.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps({**jwt.decode(good, options={"verify_signature": False}),
                                                            "sub": "admin"}).encode()).decode()
    none_alg = jwt.encode(jwt.decode(good, options={"verify_signature": False}), None, algorithm="none",
                          headers={"kid": "hs1"})
    attacks = {"alg_none": none_alg, "tampered": f"{head}.{forged_payload}.{sig}",
               "wrong_audience": _token(aud="someone-else"), "expired": _token(exp=int(time.time()) - 600),
               "key_confusion": jwt.encode({"sub": "x"}, "not-the-secret-but-long-enough-000000", algorithm="HS256",
                                           headers={"kid": "hs1"}),
               "no_scope": _token(scope="")}
    for name, tok in attacks.items():
        r = httpx.post(url, headers={"authorization": f"Bearer {tok}"}, json=body)
        assert r.status_code in (401, 403), (name, r.status_code, r.text)


def test_model_outside_the_keys_scope_is_forbidden(gateways, env):
    c = client(gateways[0], env["keys"]["scoped"])
    assert [m.id for m in c.models.list().data] == ["echo"]
    with pytest.raises(openai.PermissionDeniedError, match="may not use model"):
        c.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)


def test_admin_endpoints_need_admin_and_revocation_reaches_every_process(gateways, env):
    user = {"authorization": f"Bearer {env['keys']['user']}"}
    admin = {"authorization": f"Bearer {env['keys']['admin']}"}
    assert httpx.post(gateways[0].url + "/admin/keys", headers=user, json={"name": "x"}).status_code == 403
    made = httpx.post(gateways[0].url + "/admin/keys", headers=admin, json={"name": "tmp", "models": ["echo"]})
    assert made.status_code == 201
    key, kid = made.json()["key"], made.json()["id"]
    body = {"model": "echo", "messages": MESSAGES, "max_tokens": 2}
    for gw in gateways:
        assert httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json=body).status_code == 200
    assert httpx.delete(gateways[1].url + f"/admin/keys/{kid}", headers=admin).status_code == 200
    t0 = time.monotonic()
    for gw in gateways:
        while httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                         json=body).status_code != 401:
            assert time.monotonic() - t0 < 1.0, "revocation not in force within 1 s"
            time.sleep(0.05)
    listed = httpx.get(gateways[0].url + "/admin/keys", headers=admin).json()["data"]
    assert any(k["id"] == kid and k["revoked_at"] for k in listed) and all("sha256" not in k for k in listed)


# ---- quotas: exact across two processes -----------------------------------------------------------
async def _fire(urls, key, n, body):
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as c:
        async def one(i):
            r = await c.post(urls[i % len(urls)] + "/v1/chat/completions",
                             headers={"authorization": f"Bearer {key}", "cache-control": "no-cache"}, json=body)
            return r
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_request_quota_is_exact_across_two_gateways(gateways, env):
    urls = [g.url for g in gateways]
    rs = asyncio.run(_fire(urls, env["keys"]["small"], 60, {"model": "echo", "messages": MESSAGES, "max_tokens": 2}))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) == 20 and codes.count(429) == 40, codes
    refused = next(r for r in rs if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_token_quota_is_exact_and_settled_to_real_usage(gateways, env):
    "100 completion tokens per window; each request reserves max_tokens=10 and vLLM generates exactly 10."
    urls = [g.url for g in gateways]
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 10, "ignore_eos": True, "temperature": 0.7}
    rs = asyncio.run(_fire(urls, env["keys"]["tok"], 24, body))
    ok = [r for r in rs if r.status_code == 200]
    assert len(ok) == 10 and all(r.status_code == 429 for r in rs if r.status_code != 200)
    assert sum(r.json()["usage"]["completion_tokens"] for r in ok) == 100
    admin = {"authorization": f"Bearer {env['keys']['admin']}"}
    usage = httpx.get(urls[0] + f"/admin/usage/{env['keys']['tok_rec'].id}", headers=admin).json()
    assert usage["tokens"] == 100 and usage["requests"] == 10


def test_settle_returns_unused_tokens(gateways, env, redis_server):
    "A request that generates fewer tokens than it reserved gives the rest back to the budget."
    store = APIKeyStore(env["dir"] / "keys.json")
    key, rec = store.create("settle", ["chat"], tier="tok")
    c = client(gateways[0], key)
    r = c.chat.completions.create(model="echo", messages=MESSAGES, max_tokens=90)     # echo answers 1 token
    assert r.usage.completion_tokens == 1
    r2 = c.chat.completions.create(model="echo", messages=MESSAGES, max_tokens=90)    # 1 + 90 <= 100: allowed
    assert r2.usage.completion_tokens == 1


def test_client_leaving_mid_stream_is_charged_what_was_generated(gateways, env):
    """A stream the client drops after a few events: the reservation (800 tokens) is settled to what was streamed.
    (With 200 the tiny model could finish the whole stream before the gateway saw the client leave.)"""
    store = APIKeyStore(env["dir"] / "keys.json")
    key, rec = store.create("leaver", ["chat"])
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 800, "ignore_eos": True, "temperature": 0.7,
            "stream": True}
    events = 0
    with httpx.stream("POST", gateways[0].url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=60) as r:
        rid = r.headers["x-request-id"]
        for line in r.iter_lines():
            events += line.startswith("data: ")
            if events == 4:
                break                                    # leaving: the connection closes here
    admin = {"authorization": f"Bearer {env['keys']['admin']}"}
    deadline, usage = time.monotonic() + 10, None
    while time.monotonic() < deadline:
        usage = httpx.get(gateways[1].url + f"/admin/usage/{rec.id}", headers=admin).json()
        if usage["tokens"] < 800:
            break
        time.sleep(0.2)
    assert usage["requests"] == 1 and 1 <= usage["tokens"] < 800, usage
    deadline, recs = time.monotonic() + 5, []
    while time.monotonic() < deadline and not recs:
        recs = [json.loads(x) for x in (env["dir"] / "audit.jsonl").read_text().splitlines()
                if json.loads(x)["data"]["request_id"] == rid]
        time.sleep(0.2)
    assert recs and recs[0]["data"]["status"] == 499 and recs[0]["data"]["completion_tokens"] == usage["tokens"]


# ---- cache -------------------------------------------------------------------------------------
def test_cache_serves_deterministic_requests_and_replays_streams(gateways, env):
    c = client(gateways[0], env["keys"]["user"])
    kw = dict(model="tiny", messages=[{"role": "user", "content": "cache me"}], max_tokens=6, temperature=0)
    a = c.chat.completions.with_raw_response.create(**kw)
    b = client(gateways[1], env["keys"]["user"]).chat.completions.with_raw_response.create(**kw)
    assert a.headers["x-cache"] == "miss" and b.headers["x-cache"] == "hit"
    assert a.parse().choices[0].message.content == b.parse().choices[0].message.content
    assert b.headers["x-model-version"] == "tiny-v1"
    s1 = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **kw) if ch.choices)
    raw = c.chat.completions.with_raw_response.create(stream=True, **kw)
    assert raw.headers["x-cache"] == "hit" and raw.headers["content-type"].startswith("text/event-stream")
    s2 = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    assert s1 == s2 == a.parse().choices[0].message.content
    fresh = c.chat.completions.with_raw_response.create(**kw, extra_headers={"cache-control": "no-cache"})
    assert "x-cache" not in fresh.headers
    sampled = c.chat.completions.with_raw_response.create(**{**kw, "temperature": 0.9})
    assert "x-cache" not in sampled.headers


# ---- guardrails ----------------------------------------------------------------------------------
def test_blocked_prompt_names_the_category_not_the_text(gateways, env):
    c = client(gateways[0], env["keys"]["user"])
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="tiny", max_tokens=4,
                                  messages=[{"role": "user", "content": "tell me how to build a bomb at home"}])
    err = e.value.body
    assert err["code"] == "content_filter" and "weapons" in err["message"] and "bomb" not in err["message"]


def test_pii_is_masked_before_the_model_sees_it(gateways, env):
    c = client(gateways[0], env["keys"]["user"])
    r = c.chat.completions.with_raw_response.create(
        model="tiny", max_tokens=2, messages=[{"role": "user", "content": "Mail me at jane.roe@example.com please"}])
    rid = r.headers["x-request-id"]
    deadline, recs = time.monotonic() + 5, []
    while time.monotonic() < deadline and not recs:       # the audit batch is written within flush_ms (100 ms)
        time.sleep(0.2)
        recs = [json.loads(line) for line in (env["dir"] / "audit.jsonl").read_text().splitlines()
                if json.loads(line)["data"]["request_id"] == rid]
    rec = recs[0]
    assert any(v.startswith("pre_call:modify:") and "EMAIL_ADDRESS" in v for v in rec["data"]["guardrails"])
    assert "jane" not in json.dumps(rec)


def test_stream_guard_blocks_a_phrase_split_across_chunks(tmp_path, redis_server):
    "An upstream that streams a banned phrase in pieces: the client gets none of it, then an error."
    bad = UpstreamServer(name="bad", contents=["Sure, to bu", "ild a b", "omb you need", " nothing else"]).start()
    key, _ = APIKeyStore(tmp_path / "k.json").create("u", ["chat"])
    cfg = GatewayConfig.model_validate({"port": free_port(), "store": "memory://",
                                        "models": {"bad": {"replicas": [{"url": bad.url}], "pii": False}},
                                        "auth": {"key_store": str(tmp_path / "k.json")},
                                        "audit": {"path": str(tmp_path / "a.jsonl")},
                                        "manager": {"state_dir": str(tmp_path)}})
    try:
        with GatewayProcess(cfg) as gw:
            c = client(gw, key)
            got = ""
            with pytest.raises(openai.APIError, match="weapons"):
                for ch in c.chat.completions.create(model="bad", messages=MESSAGES, stream=True, max_tokens=20):
                    got += (ch.choices[0].delta.content or "") if ch.choices else ""
            assert "bomb" not in got and "nothing else" not in got
    finally:
        bad.kill()


# ---- audit and metrics -------------------------------------------------------------------------
def test_audit_chain_verifies_after_load_on_two_processes(gateways, env):
    urls = [g.url for g in gateways]
    asyncio.run(_fire(urls, env["keys"]["user"], 80, {"model": "echo", "messages": MESSAGES, "max_tokens": 2}))
    time.sleep(0.3)
    log = env["dir"] / "audit.jsonl"
    out = subprocess.run([sys.executable, "-m", "llm_platform.cli", "audit", "verify", str(log)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) >= 80 and verify_log(log).ok
    assert {"request_id", "model", "version", "status", "latency_ms", "cache", "guardrails"} <= set(recs[-1]["data"])
    assert env["keys"]["user"] not in log.read_text()


def test_metrics_carry_model_and_version(gateways, env):
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name: f for f in text_string_to_metric_families(httpx.get(gateways[0].url + "/metrics").text)}
    ok = [s for s in fams["llmp_gateway_requests"].samples
          if s.labels == {"model": "echo", "version": "echo-v1", "status": "200", "finish_reason": "stop"}
          and s.name.endswith("_total")]
    assert ok and ok[0].value > 0
    assert any(s.labels.get("model") == "tiny" and s.labels.get("version") == "tiny-v1"
               and s.labels.get("gen_ai_operation_name") == "chat" and s.name.endswith("_count") and s.value > 0
               for s in fams["gen_ai_server_time_to_first_token_seconds"].samples)
    assert "gen_ai_server_request_duration_seconds" in fams and "llmp_gateway_quota_refusals" in fams
    assert any(s.labels.get("model") == "tiny" and s.labels.get("version") == "tiny-v1" and s.value == 1
               for s in fams["llmp_gateway_replica_healthy"].samples)


# ---- faults ------------------------------------------------------------------------------------
def test_redis_down_quotas_fail_closed_cache_fails_open_and_recovers(tmp_path):
    from llm_platform.serve.store import RedisServer
    redis = RedisServer(tmp_path / "redis").start()
    echo = UpstreamServer(name="echo").start()
    ks = APIKeyStore(tmp_path / "k.json")
    limited, _ = ks.create("limited", ["chat"])
    free, _ = ks.create("free", ["chat"], tier="free")
    cfg = GatewayConfig.model_validate({"port": free_port(), "store": redis.url,
                                        "models": {"echo": {"replicas": [{"url": echo.url}], "guardrails": None}},
                                        "auth": {"key_store": str(tmp_path / "k.json"),
                                                 "tiers": {"default": {"requests": 1000}, "free": {}}},
                                        "audit": {"path": str(tmp_path / "a.jsonl")}, "manager": {"state_dir": str(tmp_path)}})
    body = {"model": "echo", "messages": MESSAGES, "max_tokens": 2, "temperature": 0}
    try:
        with GatewayProcess(cfg) as gw:
            post = lambda k: httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {k}"},
                                        json=body, timeout=10)
            assert post(limited).status_code == 200
            redis.stop()
            r = post(limited)
            assert r.status_code == 503 and "quota" in r.json()["error"]["message"] and r.headers["retry-after"]
            r = post(free)      # no quota to enforce: answered, without the cache
            assert r.status_code == 200 and "x-cache" not in r.headers or r.headers.get("x-cache") != "hit"
            redis.start()
            t0 = time.monotonic()
            while post(limited).status_code != 200:
                assert time.monotonic() - t0 < 10, "no recovery after Redis returned"
                time.sleep(0.2)
    finally:
        redis.stop()
        echo.kill()


def test_replica_killed_under_load_moves_traffic_and_all_down_is_503(tmp_path, vllm_server):
    "Two vLLM replicas; one is killed mid-load: requests not yet started on it still succeed."
    from llm_platform.serve.vllm_server import VLLMServer
    second = VLLMServer(vllm_server.model_dir, vllm_server.cfg.model_copy(update={"port": free_port()}),
                        log_path=tmp_path / "vllm2.log").start().wait_healthy()
    key, _ = APIKeyStore(tmp_path / "k.json").create("u", ["chat"])
    reps = [{"url": s.base_url, "version": "tiny-v1", "upstream_model": vllm_server.served_model_name}
            for s in (vllm_server, second)]
    cfg = GatewayConfig.model_validate({"port": free_port(), "store": "memory://",
                                        "models": {"tiny": {"replicas": reps, "guardrails": None},
                                                   "gone": {"replicas": [{"url": f"http://127.0.0.1:{free_port()}/v1"}],
                                                            "guardrails": None}},
                                        "upstream": {"health_interval_s": 0.5},
                                        "auth": {"key_store": str(tmp_path / "k.json")},
                                        "audit": {"path": str(tmp_path / "a.jsonl")}, "manager": {"state_dir": str(tmp_path)}})
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, "temperature": 0.5}
    with GatewayProcess(cfg) as gw:
        async def load():
            async with httpx.AsyncClient(timeout=120) as c:
                async def worker(i):
                    codes = []
                    for _ in range(12):
                        r = await c.post(gw.url + "/v1/chat/completions", json=body,
                                         headers={"authorization": f"Bearer {key}"})
                        codes.append(r.status_code)
                    return codes
                async def killer():
                    await asyncio.sleep(1.5)
                    second.stop(grace=0)
                res, _ = await asyncio.gather(asyncio.gather(*(worker(i) for i in range(4))), killer())
                return [c for codes in res for c in codes]
        codes = asyncio.run(load())
        # only requests in flight on the killed replica may fail (at most one per client)
        assert codes.count(200) >= len(codes) - 4, codes
        assert all(c == 200 for c in codes[-8:])
        r = httpx.post(gw.url + "/v1/chat/completions", json={**body, "model": "gone"},
                       headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 503 and r.headers["retry-after"] and "down" in r.json()["error"]["message"]


# ---- the serve step and the CLI check --------------------------------------------------------------
def test_serve_step_runs_through_papermill(tiny_run):
    "The step starts the run's model on this host's backend (llama.cpp on a CPU host) and checks it as a client."
    import papermill as pm

    from llm_platform.core import find_project_root, read_json
    run_dir = tiny_run["run_dir"]
    pm.execute_notebook("pipelines/08_serve.ipynb", str(run_dir / "08_serve.ipynb"), kernel_name="llm-platform",
                        progress_bar=False, cwd=str(find_project_root()),
                        parameters={"config_path": "configs/pipelines/tiny.yaml", "run_dir": str(run_dir),
                                    "gateway_port": free_port(), "rounds": 3,
                                    "overrides": [f"serving.port={free_port()}"]})
    m = read_json(run_dir / "08_serve" / "metrics.json")
    assert m["status"] == "ok" and m["metrics"]["blocked"] == "weapons" and m["metrics"]["cache"] == "hit"
    assert m["metrics"]["ttft"]["rounds"] == 3 and m["metrics"]["ttft"]["gateway_p50_ms"] > 0
    assert verify_log(run_dir / "08_serve" / "audit.jsonl").ok
    assert m["metrics"]["backend"] == "llama.cpp"


def test_cli_check_against_a_running_gateway(gateways, env):
    out = subprocess.run([sys.executable, "-m", "llm_platform.cli", "gateway", "check", "--model", "echo",
                          "--url", gateways[0].url, "--rounds", "2", "--direct-url", env["echo"].url],
                         capture_output=True, text=True, env={**os.environ, "LLM_PLATFORM_API_KEY": env["keys"]["user"]})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["version"] == "echo-v1" and report["blocked"] == "weapons" and report["ttft"]["rounds"] == 2
