"""Gateway overhead: our gateway vs the LiteLLM proxy vs the Portkey gateway vs no gateway, on an instant upstream.

One run, one machine, every side started once and pointed at the same upstream: a raw ASGI app on uvicorn
(uvloop, httptools, 1 worker, 127.0.0.1) that answers OpenAI-shaped chat completions (JSON, or SSE when
`"stream": true`) at once, so that what is measured is the hop and what each side does on it.

  direct    wrk straight at the upstream: the baseline every "added" figure subtracts
  ours      `llm-platform gateway run`: auth + Redis quotas + cache lookup + content guardrail + audit + metrics
  litellm   the LiteLLM proxy, pinned, in its own venv under .cache/bench/, defaults (master key, no database)
  portkey   the Portkey gateway (npm @portkey-ai/gateway, pinned, @hono/node-server 1.13.5) under .cache/bench/
  ours-traced  (opt-in) ours with `tracing.enabled`: OpenTelemetry spans of every request exported over OTLP/HTTP
            to a receiver in this process (llm_platform.monitor.tracing.OTLPReceiver, counting only)

Measures (sides alternate: round r runs the sides rotated by r, so drift and other jobs hit every side alike):
  1. wrk, c=1 (-t1) and c=16 (-t2), non-cacheable chat body (temperature 0.7): p50/p95/p99 and req/s per cell;
     added latency = side - direct in the same round; medians over rounds, and the best round. Each cell also
     reads the side's server CPU per request from /proc (its process session; ours adds its Redis): on a
     shared machine the figure least bent by other jobs.
  2. Time to a stream's first SSE `data:` line, N sequential requests per side, interleaved request by request;
     each stream's text is checked against the upstream's.
  3. Cache hits: ours with temperature 0 and one fixed body (every request after the first is a hit), c=16 and
     c=1; checked by `x-cache` and by the upstream's request count.
  4. PII masking's cost: a second instance of ours with the shipped guardrails' `mask_input_pii` on (output
     masking off in both), vs the first, c=1, a body with an email, a phone number and a name.
  5. Only with --vllm-url (this script never starts vLLM): time to first token through ours vs direct.
Exit 0 whatever the figures: it is a measurement, and PASS/MISS lines only read them against the issue's targets.

    PYTHONPATH=. .venv/bin/python bench/gateway_bench.py                    # ~5.5 min; installs the peers once
    PYTHONPATH=. .venv/bin/python bench/gateway_bench.py --sides direct,portkey --rounds 1 --seconds 2
    PYTHONPATH=. .venv/bin/python bench/gateway_bench.py --vllm-url http://127.0.0.1:8000/v1 --vllm-model NAME
    PYTHONPATH=. .venv/bin/python bench/gateway_bench.py --sides direct,ours,ours-traced   # tracing's cost
"""
import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
# Newest LiteLLM whose `[proxy]` extra resolves from the package index here: 1.110.x needs `litellm-proxy`
# (not published there), 1.108.8-1.109.x need litellm-proxy-extras / litellm-enterprise builds it lacks.
LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"          # newest on npm
HONO_NODE_SERVER = "1.13.5"         # later 1.x buffer Portkey's SSE (shared/RECIPES.md)
MODEL = "m"
UPSTREAM_KEY = "sk-upstream-unused"
LITELLM_KEY = "sk-bench-litellm"
ALL_SIDES = ("direct", "ours", "litellm", "portkey")
OPT_SIDES = ("ours-traced",)        # only when named in --sides
TRACE_RATE = [1.0]                  # ours-traced's tracing.sample_rate (--trace-sample-rate)
# The issue's figures for the peers, measured the same way on its author's machine.
ISSUE = {"litellm": "+10 ms p50, ~90 req/s", "portkey": "+0.8 ms p50 / +7 ms p99, ~1,000 req/s, ~29 ms to first byte"}


# ----------------------------------------------------------------------------------------------- the upstream
# Responses are built once per model name; the app only reads the body, parses it (to see "stream") and writes.
_CREATED = int(time.time())
_SERVED = [0]                       # chat requests answered, read through GET /bench/count


def _completion(model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": _CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the instant upstream."},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}).encode()


def _chunks(model: str, usage: bool) -> list[bytes]:
    def chunk(delta, finish=None, **extra):
        return b"data: " + json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": _CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}).encode() + b"\n\n"
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": w}) for w in ("Hello", " from", " the", " instant", " upstream:", " every", " token", " at", " once.")]
    out.append(chunk({}, "stop"))
    if usage:
        out.append(b"data: " + json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": _CREATED, "model": model,
            "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}).encode()
                   + b"\n\n")
    return out + [b"data: [DONE]\n\n"]


_JSON_CACHE: dict[str, bytes] = {}
_SSE_CACHE: dict[tuple, list[bytes]] = {}
_JSON = [(b"content-type", b"application/json")]


async def _reply(send, status: int, body: bytes, headers=_JSON):
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def upstream_app(scope, receive, send):
    "Raw ASGI, no framework: POST /v1/chat/completions, GET /v1/models, GET /health, GET /bench/count."
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path.endswith("/chat/completions"):
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b""); more = msg.get("more_body", False)
        try:
            req = json.loads(body)
            model = str(req.get("model", MODEL))
        except (ValueError, AttributeError):
            return await _reply(send, 400, b'{"error":{"message":"body is not a JSON object","type":"invalid_request_error"}}')
        _SERVED[0] += 1
        if not req.get("stream"):
            if model not in _JSON_CACHE:
                _JSON_CACHE[model] = _completion(model)
            return await _reply(send, 200, _JSON_CACHE[model])
        key = (model, bool((req.get("stream_options") or {}).get("include_usage")))
        if key not in _SSE_CACHE:
            _SSE_CACHE[key] = _chunks(*key)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for c in _SSE_CACHE[key]:
            await send({"type": "http.response.body", "body": c, "more_body": True})
        return await send({"type": "http.response.body", "body": b""})
    if method == "GET" and path.endswith("/models"):
        return await _reply(send, 200, json.dumps({"object": "list", "data": [
            {"id": MODEL, "object": "model", "created": _CREATED, "owned_by": "bench"}]}).encode())
    if method == "GET" and path == "/health":
        return await _reply(send, 200, b'{"status":"ok"}')
    if method == "GET" and path == "/bench/count":
        return await _reply(send, 200, str(_SERVED[0]).encode())
    await _reply(send, 404, b'{"error":{"message":"not found","type":"not_found"}}')


def serve_upstream(port: int):
    import uvicorn
    uvicorn.run(upstream_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", workers=1,
                log_level="warning", access_log=False, lifespan="on")


# ----------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    "One server process in its own session, stopped by its pid (and its group: LiteLLM and npm fork)."
    name: str
    cmd: list
    log: Path
    env: dict | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self):
        print(f"  start {self.name}: {' '.join(map(str, self.cmd))}", flush=True)
        self.popen = subprocess.Popen(list(map(str, self.cmd)), stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                      env=self.env, cwd=self.cwd, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def stop(self):
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout=10.0):
    "(status, body bytes) of one request; HTTP errors are answers too."
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session: int, also: list[int] = ()) -> float:
    "CPU seconds of every live process in `session` plus the pids in `also` (from /proc; 1/CLK_TCK resolution)."
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[3]) == session or int(d.name) in also:
            total += int(rest[11]) + int(rest[12])
    return total / _TICK


@dataclass
class Side:
    name: str
    url: str                                   # the chat completions URL
    headers: dict = field(default_factory=dict)
    proc: Proc | None = None
    version: str = ""
    also: list[int] = field(default_factory=list)  # more pids whose CPU counts for this side (ours: its Redis)

    def cpu_seconds(self) -> float:
        "User + system CPU of the side's server: its session (workers included) and `also`."
        return session_cpu_seconds(self.proc.popen.pid if self.proc else -1, self.also)

    @property
    def host_port(self) -> tuple[str, int]:
        hp = self.url.split("://", 1)[1].split("/", 1)[0]
        return hp.rsplit(":", 1)[0], int(hp.rsplit(":", 1)[1])

    @property
    def path(self) -> str:
        return "/" + self.url.split("://", 1)[1].split("/", 1)[1]


def chat_body(temperature=0.7, stream=False, content="Say hello in five words.", model=MODEL, max_tokens=16) -> bytes:
    b = {"model": model, "messages": [{"role": "user", "content": content}], "temperature": temperature,
         "max_tokens": max_tokens}
    if stream:
        b["stream"] = True
    return json.dumps(b).encode()


def wait_ready(side: Side, timeout: float = 120.0, body: bytes | None = None):
    "Poll with a real chat request until a 200 with a choice comes back; fail with the server's log tail."
    t0, last, body = time.monotonic(), "", body or chat_body()
    while time.monotonic() - t0 < timeout:
        if side.proc is not None and not side.proc.alive():
            raise RuntimeError(f"{side.name} exited (code {side.proc.popen.returncode}):\n{side.proc.tail()}")
        try:
            status, answer = http("POST", side.url, body, {"Content-Type": "application/json", **side.headers}, 30)
            if status == 200 and json.loads(answer).get("choices"):
                print(f"  {side.name} ready after {time.monotonic() - t0:.1f} s", flush=True)
                return
            last = f"HTTP {status}: {answer[:300]!r}"
        except (OSError, ValueError) as e:
            last = repr(e)
        time.sleep(0.25)
    raise RuntimeError(f"{side.name} not ready after {timeout:.0f} s; last answer {last}\n"
                       f"{side.proc.tail() if side.proc else ''}")


# ----------------------------------------------------------------------------------------------- the peers
def run_logged(cmd: list, cwd: Path | None = None, env: dict | None = None):
    print(f"  $ {' '.join(map(str, cmd))}", flush=True)
    subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, check=True)


def ensure_litellm(skip_install: bool) -> Path:
    "The LiteLLM proxy in its own venv, installed once (pinned) and reused."
    venv = CACHE / "litellm-venv"
    exe, marker = venv / "bin" / "litellm", venv / f".installed-{LITELLM_VERSION}"
    if marker.exists() and exe.exists():
        return exe
    if skip_install:
        raise RuntimeError(f"LiteLLM {LITELLM_VERSION} is not installed under {venv} (--skip-install)")
    print(f"installing LiteLLM proxy {LITELLM_VERSION} into {venv} (once; a few minutes)", flush=True)
    if not (venv / "bin" / "python").exists():
        run_logged([sys.executable, "-m", "venv", venv])
    run_logged([venv / "bin" / "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"])
    marker.touch()
    return exe


def ensure_portkey(skip_install: bool) -> Path:
    "The Portkey gateway from npm, pinned, with @hono/node-server pinned through `overrides`, installed once."
    folder = CACHE / "portkey"
    script = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    marker = folder / f".installed-{PORTKEY_VERSION}-{HONO_NODE_SERVER}"
    if marker.exists() and script.exists():
        return script
    if skip_install:
        raise RuntimeError(f"Portkey gateway {PORTKEY_VERSION} is not installed under {folder} (--skip-install)")
    print(f"installing @portkey-ai/gateway {PORTKEY_VERSION} (@hono/node-server {HONO_NODE_SERVER}) into {folder}",
          flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps({
        "name": "gateway-bench-portkey", "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER}}, indent=1))
    run_logged(["npm", "install", "--no-audit", "--no-fund"], cwd=folder)
    marker.touch()
    return script


def start_litellm(upstream: str, work: Path, skip_install: bool) -> Side:
    exe = ensure_litellm(skip_install)
    cfg = work / "litellm.yaml"
    cfg.write_text(json.dumps({"model_list": [{"model_name": MODEL, "litellm_params": {
        "model": f"openai/{MODEL}", "api_base": upstream, "api_key": UPSTREAM_KEY}}]}, indent=1))  # JSON is YAML
    port = free_port()
    # LITELLM_MASTER_KEY: auth on, no database. LITELLM_LOCAL_MODEL_COST_MAP: no fetch of the price list at start
    # (only registries are reachable here; it changes nothing per request).
    env = {**os.environ, "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = Proc("litellm", [exe, "--config", cfg, "--host", "127.0.0.1", "--port", port], work / "litellm.log",
                env=env).start()
    version = subprocess.run([exe.parent / "python", "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True).stdout.strip()
    return Side("litellm", f"http://127.0.0.1:{port}/v1/chat/completions",
                {"Authorization": f"Bearer {LITELLM_KEY}"}, proc, f"litellm {version}")


def start_portkey(upstream: str, work: Path, skip_install: bool) -> Side:
    script = ensure_portkey(skip_install)
    port = free_port()
    proc = Proc("portkey", ["node", script, f"--port={port}", "--headless"], work / "portkey.log",
                cwd=script.parents[4]).start()
    pkg = json.loads((script.parents[1] / "package.json").read_text())
    hono = json.loads((script.parents[4] / "node_modules" / "@hono" / "node-server" / "package.json").read_text())
    return Side("portkey", f"http://127.0.0.1:{port}/v1/chat/completions",
                {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream,
                 "Authorization": f"Bearer {UPSTREAM_KEY}"}, proc,
                f"@portkey-ai/gateway {pkg['version']} (@hono/node-server {hono['version']}, node {node_version()})")


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


# ----------------------------------------------------------------------------------------------- our gateway
def gateway_exe() -> Path:
    exe = Path(sys.executable).parent / "llm-platform"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: run this script with the project venv's python")
    return exe


def ours_env() -> dict:
    "Our gateway runs this checkout's code (PYTHONPATH), whatever checkout the venv was installed from."
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def create_key(work: Path) -> str:
    "A chat key in a fresh key store; `keys create` prints the key alone on stdout."
    store = work / "api_keys.json"
    out = subprocess.run([gateway_exe(), "keys", "create", "bench", "--scope", "chat", "--ttl-days", "1", "--store", store],
                         capture_output=True, text=True, env=ours_env())
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"llm-platform keys create failed:\n{out.stdout}\n{out.stderr}")
    return lines[-1]


def safety_config(work: Path, mask_input: bool) -> Path:
    "The shipped guardrails (content filter, injection heuristics) with input PII masking on or off, output off."
    import yaml
    cfg = yaml.safe_load((ROOT / "configs" / "safety" / "default.yaml").read_text())
    cfg.update(mask_input_pii=mask_input, mask_output_pii=False)
    f = work / f"safety-{'pii' if mask_input else 'nopii'}.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def ours_config(upstream: str, store_url: str, work: Path, pii: bool, model: str = MODEL,
                tracing_endpoint: str | None = None) -> dict:
    "Everything on: auth, Redis quotas (a tier no run can exhaust), cache, content guardrail, audit, metrics."
    tracing = ({"tracing": {"enabled": True, "endpoint": tracing_endpoint, "sample_rate": TRACE_RATE[0]}}
               if tracing_endpoint else {})
    return {"host": "127.0.0.1", "port": 8080, "store": store_url, **tracing,
            "models": {model: {"replicas": [{"url": upstream, "version": "1"}],
                               "guardrails": str(safety_config(work, pii))}},
            "auth": {"key_store": str(work / "api_keys.json"),
                     "tiers": {"default": {"requests": 100_000_000, "tokens": 100_000_000_000, "window_s": 60}}},
            "cache": {"enabled": True, "ttl_s": 300},
            "audit": {"enabled": True, "path": str(work / f"audit-{'pii' if pii else 'nopii'}-{model}.jsonl")}}


def start_ours(name: str, upstream: str, store_url: str, key: str, work: Path, pii: bool = False,
               model: str = MODEL, tracing_endpoint: str | None = None) -> Side:
    cfg = work / f"{name}.yaml"
    cfg.write_text(json.dumps(ours_config(upstream, store_url, work, pii, model, tracing_endpoint), indent=1))  # JSON is YAML
    port = free_port()
    proc = Proc(name, [gateway_exe(), "gateway", "run", "--config", cfg, "--set", f"port={port}"], work / f"{name}.log",
                env=ours_env()).start()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return Side(name, f"http://127.0.0.1:{port}/v1/chat/completions", {"Authorization": f"Bearer {key}"}, proc,
                f"llm_platform {commit.stdout.strip()}{' (modified)' if dirty else ''}")


# ----------------------------------------------------------------------------------------------- wrk
WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_lua(side: Side, body: bytes, work: Path, tag: str) -> Path:
    f = work / f"wrk-{side.name}-{tag}.lua"
    f.write_text(WRK_LUA.format(body=lua_string(body.decode()), headers="\n".join(
        f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in side.headers.items())))
    return f


def run_wrk(side: Side, lua: Path, clients: int, seconds: int) -> dict:
    threads = 1 if clients == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(lua),
           side.url]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary for {side.name}:\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[8:])
    errors = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50": r["p50_us"] / 1e3, "p95": r["p95_us"] / 1e3,
            "p99": r["p99_us"] / 1e3, "requests": r["requests"], "errors": errors}


def wrk_cell(side: Side, lua: Path, clients: int, seconds: int, warmup: int) -> dict:
    "One timed wrk run after an untimed one; with the server's CPU per request (less noisy than wall time here)."
    if warmup > 0:
        run_wrk(side, lua, clients, warmup)
    cpu0 = side.cpu_seconds()
    r = run_wrk(side, lua, clients, seconds)
    r["cpu_ms"] = (side.cpu_seconds() - cpu0) * 1e3 / max(1, r["requests"])
    return r


# ----------------------------------------------------------------------------------------------- stream TTFB
@dataclass
class Stream:
    "What one streamed request took (seconds from sending) and delivered."
    first: float | None = None              # the first complete `data:` line
    first_content: float | None = None      # the first `data:` line carrying text
    total: float = 0.0
    events: int = 0
    text: str = ""


def stream_text(line: bytes) -> str:
    "The text one SSE `data:` line carries (chat delta content or completion text)."
    try:
        msg = json.loads(line[5:])
    except ValueError:
        return ""
    return "".join((ch.get("delta") or {}).get("content") or ch.get("text") or "" for ch in msg.get("choices") or ())


class RawClient:
    "HTTP/1.1 keep-alive over asyncio streams; times the first SSE `data:` line of a streamed response."

    def __init__(self, side: Side):
        self.side, self.reader, self.writer = side, None, None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post_stream(self, body: bytes) -> Stream:
        "One streamed request on the kept-alive connection; raises on a non-200 answer or a stream without [DONE]."
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(*self.side.host_port)
        host, port = self.side.host_port
        head = (f"POST {self.side.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in self.side.headers.items()) + "\r\n").encode()
        t0 = time.perf_counter()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        st, buf, scanned = Stream(), b"", 0

        def seen(data: bytes):                  # stamp the first complete data line, and the first with content
            nonlocal buf, scanned
            buf += data
            while st.first_content is None and (end := buf.find(b"\n", scanned)) >= 0:
                line, scanned = buf[scanned:end].strip(), end + 1
                if line.startswith(b"data:"):
                    now = time.perf_counter() - t0
                    st.first = now if st.first is None else st.first
                    if line[5:].strip() != b"[DONE]" and stream_text(line):
                        st.first_content = now

        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                seen(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        elif "content-length" in headers:
            seen(await self.reader.readexactly(int(headers["content-length"])))
        else:
            seen(await self.reader.read())
            headers["connection"] = "close"
        st.total = time.perf_counter() - t0
        if headers.get("connection") == "close":
            await self.close()
        if status != 200 or st.first is None or b"[DONE]" not in buf:
            raise RuntimeError(f"{self.side.name}: stream answered HTTP {status}: {buf[:300]!r}")
        lines = [x.strip() for x in buf.split(b"\n") if x.strip().startswith(b"data:")]
        st.events, st.text = len(lines), "".join(stream_text(x) for x in lines if x[5:].strip() != b"[DONE]")
        return st


async def ttfb_interleaved(sides: list[Side], n: int, body: bytes) -> dict[str, list[Stream]]:
    "n streamed requests per side, one at a time, side order rotated per request."
    clients = {s.name: RawClient(s) for s in sides}
    out = {s.name: [] for s in sides}
    for s in sides:                                            # warm-up: connections, caches, JITs
        for _ in range(5):
            await clients[s.name].post_stream(body)
    for i in range(n):
        for s in sides[i % len(sides):] + sides[: i % len(sides)]:
            out[s.name].append(await clients[s.name].post_stream(body))
    for c in clients.values():
        await c.close()
    return out


# ----------------------------------------------------------------------------------------------- report
def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def med(xs) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fmt(x: float, nd: int = 2, sign: bool = False) -> str:
    return "n/a" if x != x else (f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}")


def print_table(title: str, header: list[str], rows: list[list]):
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


# ----------------------------------------------------------------------------------------------- measures
def measure_wrk(order: list[Side], work: Path, rounds: int, seconds: int, warmup: int) -> dict:
    "The c=1 / c=16 matrix, sides rotated per round; per (clients, side): medians and added vs direct."
    luas = {s.name: write_lua(s, chat_body(temperature=0.7), work, "chat") for s in order}
    cells: dict = {c: {s.name: [] for s in order} for c in (1, 16)}
    for r in range(rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        for c in (1, 16):
            for s in rot:
                cells[c][s.name].append(wrk_cell(s, luas[s.name], c, seconds, warmup))
        print(f"  round {r + 1}/{rounds} done (order {' '.join(s.name for s in rot)}), load {os.getloadavg()[0]:.2f}",
              flush=True)
    summary = {}
    for c in (1, 16):
        rows, base = [], cells[c]["direct"]
        for s in order:
            runs = cells[c][s.name]
            m = summary[f"c{c}/{s.name}"] = {
                "rps": med(x["rps"] for x in runs), **{q: med(x[q] for x in runs) for q in ("p50", "p95", "p99")},
                **{f"added_{q}": med(x[q] - b[q] for x, b in zip(runs, base)) for q in ("p50", "p95", "p99")},
                "cpu_ms": med(x["cpu_ms"] for x in runs), "errors": sum(x["errors"] for x in runs), "rounds": runs,
                # the least disturbed round (other jobs share the machine): lowest p50, highest req/s
                "best_p50": min(x["p50"] for x in runs), "best_rps": max(x["rps"] for x in runs)}
            added = "-" if s.name == "direct" else " / ".join(fmt(m[f"added_{q}"], sign=True) for q in ("p50", "p95", "p99"))
            rows.append([s.name, fmt(m["p50"]), fmt(m["p95"]), fmt(m["p99"]), added, f"{m['rps']:.0f}",
                         f"{m['rps'] / summary[f'c{c}/direct']['rps']:.3f}x", fmt(m["cpu_ms"]),
                         f"{fmt(m['best_p50'])} / {m['best_rps']:.0f}", str(m["errors"])])
        print_table(f"wrk, {c} client{'s' if c > 1 else ''} ({'-t1 -c1' if c == 1 else '-t2 -c16'}), {rounds} rounds x "
                    f"{seconds} s, medians over rounds (ms); added = side - direct in the same round",
                    ["side", "p50", "p95", "p99", "added p50 / p95 / p99", "req/s", "req/s vs direct", "server CPU ms/req",
                     "best round p50 / req/s", "errors"], rows)
    return summary


def measure_ttfb(order: list[Side], n: int) -> dict:
    "Time to the first SSE data line (and to the first with text), n streamed requests per side, interleaved."
    raw = asyncio.run(ttfb_interleaved(order, n, chat_body(temperature=0.7, stream=True)))
    out, rows = {}, []
    d = [x.first for x in raw["direct"]]
    for s in order:
        f, fc = [x.first for x in raw[s.name]], [x.first_content for x in raw[s.name] if x.first_content is not None]
        text_ok = sum(x.text == raw["direct"][0].text for x in raw[s.name])
        t = out[s.name] = {"p50": pct(f, .5) * 1e3, "p95": pct(f, .95) * 1e3, "p99": pct(f, .99) * 1e3,
                           "added_p50": (pct(f, .5) - pct(d, .5)) * 1e3, "added_p95": (pct(f, .95) - pct(d, .95)) * 1e3,
                           "first_text_p50": pct(fc, .5) * 1e3 if fc else float("nan"),
                           "whole_p50": pct([x.total for x in raw[s.name]], .5) * 1e3,
                           "data_lines": raw[s.name][-1].events, "text_intact": text_ok, "text": raw[s.name][-1].text}
        rows.append([s.name, fmt(t["p50"]), fmt(t["p95"]), fmt(t["p99"]),
                     "-" if s.name == "direct" else f"{fmt(t['added_p50'], sign=True)} / {fmt(t['added_p95'], sign=True)}",
                     fmt(t["first_text_p50"]), fmt(t["whole_p50"]), str(t["data_lines"]), f"{text_ok}/{n}"])
    print_table(f"stream: time to the first SSE data line, {n} requests per side, one at a time, interleaved (ms)",
                ["side", "p50", "p95", "p99", "added p50 / p95", "first text p50", "whole stream p50", "data lines",
                 "text intact"], rows)
    for s in order:
        if out[s.name]["text_intact"] < n:
            print(f"  {s.name} streamed {out[s.name]['text']!r} where the upstream sent {raw['direct'][0].text!r}")
    return out


def upstream_count(upstream: str) -> int:
    return int(http("GET", upstream.rsplit("/v1", 1)[0] + "/bench/count")[1])


def measure_cache_hits(ours: Side, upstream: str, work: Path, wrk_summary: dict, seconds: int, warmup: int) -> dict:
    "Ours with temperature 0 and one fixed body: every request after the first is answered from the cache."
    body = chat_body(temperature=0, content="What is the capital of France?")
    for _ in range(2):                                        # the first fills the cache, the second should hit
        status, _ = http("POST", ours.url, body, {"Content-Type": "application/json", **ours.headers})
    req = urllib.request.Request(ours.url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **ours.headers})
    with urllib.request.urlopen(req, timeout=10) as r:
        x_cache = r.headers.get("x-cache")
    lua = write_lua(ours, body, work, "hit")
    before = upstream_count(upstream)
    hits = {c: wrk_cell(ours, lua, c, seconds, warmup) for c in (16, 1)}
    reached = upstream_count(upstream) - before
    print_table(f"cache hits: ours, temperature 0, one fixed body, {seconds} s per cell (x-cache: {x_cache}; the "
                f"upstream was reached {reached} times during {sum(h['requests'] for h in hits.values())}+ requests)",
                ["clients", "p50 ms", "p95 ms", "p99 ms", "req/s", "vs ours uncached", "server CPU ms/req", "errors"],
                [[str(c), fmt(h["p50"]), fmt(h["p95"]), fmt(h["p99"]), f"{h['rps']:.0f}",
                  f"{h['rps'] / wrk_summary[f'c{c}/ours']['rps']:.2f}x", fmt(h["cpu_ms"]), str(h["errors"])]
                 for c, h in hits.items()])
    return {**{f"c{c}": h for c, h in hits.items()}, "x_cache": x_cache, "upstream_reached": reached}


PII_TEXT = ("Hi, I am Maria Gonzalez. Please email me at maria.gonzalez@example.com or call +1 415 555 0134 "
            "about my order.")


def measure_pii(off: Side, on: Side, work: Path, rounds: int, seconds: int, warmup: int) -> dict:
    "Input PII masking on vs off, two instances of ours alternating, 1 client, one body with an email, phone, name."
    body = chat_body(temperature=0.7, content=PII_TEXT)
    luas = {s.name: write_lua(s, body, work, "pii") for s in (off, on)}
    cells = {s.name: [] for s in (off, on)}
    for r in range(rounds):
        for s in ((off, on) if r % 2 == 0 else (on, off)):
            cells[s.name].append(wrk_cell(s, luas[s.name], 1, seconds, warmup))
    added = {q: med(a[q] - b[q] for a, b in zip(cells[on.name], cells[off.name])) for q in ("p50", "p95", "cpu_ms")}
    print_table(f"PII masking's cost: ours with input PII masking on vs off, 1 client, same body (a name, an email, a "
                f"phone number), {rounds} rounds x {seconds} s (ms)",
                ["side", "p50", "p95", "req/s", "server CPU ms/req", "added p50 / p95 / CPU ms by masking", "errors"],
                [[s.name, fmt(med(x["p50"] for x in cells[s.name])), fmt(med(x["p95"] for x in cells[s.name])),
                  f"{med(x['rps'] for x in cells[s.name]):.0f}", fmt(med(x["cpu_ms"] for x in cells[s.name])),
                  "-" if s is off else " / ".join(fmt(added[q], sign=True) for q in ("p50", "p95", "cpu_ms")),
                  str(sum(x["errors"] for x in cells[s.name]))] for s in (off, on)])
    return {"added": added, "cells": cells}


async def vllm_pair(direct: Side, ours: Side, body: bytes, n: int) -> dict:
    "Time to the first streamed text on a real model server, direct vs through ours, alternating which goes first."
    cd, co = RawClient(direct), RawClient(ours)
    res = {direct.name: [], ours.name: []}
    for i in range(n + 2):
        for c in ((cd, co) if i % 2 == 0 else (co, cd)):
            st = await c.post_stream(body)
            if i >= 2:                                        # two untimed pairs first
                res[c.side.name].append(st.first_content if st.first_content is not None else st.first)
    await cd.close(); await co.close()
    return res


def measure_vllm(vdirect: Side, vours: Side, model: str, n: int = 30) -> dict:
    res = asyncio.run(vllm_pair(vdirect, vours, chat_body(temperature=0.7, stream=True, model=model, max_tokens=8), n))
    d = pct(res[vdirect.name], .5)
    print_table(f"time to first token on the vLLM server: direct vs through ours ({n} each, interleaved, ms)",
                ["side", "p50", "p95", "added p50"],
                [[k, fmt(pct(v, .5) * 1e3), fmt(pct(v, .95) * 1e3),
                  "-" if k == vdirect.name else fmt((pct(v, .5) - d) * 1e3, sign=True)] for k, v in res.items()])
    return {k: {"p50": pct(v, .5) * 1e3, "p95": pct(v, .95) * 1e3} for k, v in res.items()}


def print_targets(wrk: dict, ttfb: dict, cache: dict | None, names: list[str]):
    print("\ntargets (issue 10), everything on:")
    def line(text, ok):
        print(f"  {text} -> {'PASS' if ok else 'MISS'}")
    if "ours" in names:
        a95 = wrk["c1/ours"]["added_p95"]
        line(f"added p95 at 1 client < 2 ms: {fmt(a95, sign=True)} ms", a95 < 2)
        r16 = wrk["c16/ours"]["rps"]
        if "portkey" in names:
            line(f"req/s at 16 clients >= Portkey's: {r16:.0f} vs {wrk['c16/portkey']['rps']:.0f}",
                 r16 >= wrk["c16/portkey"]["rps"])
        if "litellm" in names:
            line(f"req/s at 16 clients >= 10x LiteLLM's: {r16:.0f} vs 10 x {wrk['c16/litellm']['rps']:.0f}",
                 r16 >= 10 * wrk["c16/litellm"]["rps"])
        line(f"added time to a stream's first byte < 2 ms (p50): {fmt(ttfb['ours']['added_p50'], sign=True)} ms",
             ttfb["ours"]["added_p50"] < 2)
        line(f">= 1,000 req/s on cache hits (16 clients): {cache['c16']['rps']:.0f}", cache["c16"]["rps"] >= 1000)
    else:
        print("  ours was not run (--sides): no target read")
    if {"ours", "ours-traced"} <= set(names):
        on, off = wrk["c1/ours-traced"], wrk["c1/ours"]
        print(f"  tracing on - off, 1 client: p50 {fmt(on['added_p50'] - off['added_p50'], sign=True)} ms, "
              f"p95 {fmt(on['added_p95'] - off['added_p95'], sign=True)} ms, server CPU "
              f"{fmt(on['cpu_ms'] - off['cpu_ms'], sign=True)} ms/req; 16 clients: "
              f"{wrk['c16/ours-traced']['rps']:.0f} vs {wrk['c16/ours']['rps']:.0f} req/s")
    for n, text in ISSUE.items():
        if n in names:
            print(f"  {n} here: {fmt(wrk[f'c1/{n}']['added_p50'], sign=True)} ms p50 / "
                  f"{fmt(wrk[f'c1/{n}']['added_p99'], sign=True)} ms p99 at 1 client, {wrk[f'c16/{n}']['rps']:.0f} "
                  f"req/s at 16, {fmt(ttfb[n]['added_p50'], 1, sign=True)} ms to first byte (issue: {text})")


# ----------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="wrk time per cell (plus --warmup before it)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed wrk seconds before each cell (0: none)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the wrk matrix (sides rotated each round)")
    ap.add_argument("--sides", default=",".join(ALL_SIDES), help="comma-separated, from " + ",".join(ALL_SIDES))
    ap.add_argument("--streams", type=int, default=200, help="streamed requests per side for time to first byte")
    ap.add_argument("--skip-install", action="store_true", help="fail instead of installing a missing peer")
    ap.add_argument("--vllm-url", help="an already running vLLM OpenAI server (.../v1): time to first token via ours")
    ap.add_argument("--vllm-model", help="the served model name at --vllm-url")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--trace-sample-rate", type=float, default=1.0, help="ours-traced: tracing.sample_rate")
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)    # internal: run the upstream on PORT
    args = ap.parse_args()
    if args.serve_upstream:
        return serve_upstream(args.serve_upstream)
    TRACE_RATE[0] = args.trace_sample_rate
    names = [s.strip() for s in args.sides.split(",") if s.strip()]
    if set(names) - set(ALL_SIDES + OPT_SIDES):
        ap.error(f"--sides: unknown {sorted(set(names) - set(ALL_SIDES + OPT_SIDES))}; choose from {ALL_SIDES + OPT_SIDES}")
    if args.vllm_url and not args.vllm_model:
        ap.error("--vllm-url needs --vllm-model")
    names = ["direct"] + [n for n in names if n != "direct"]        # every figure is read against direct
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install wrk)")

    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("Copyright")[0].strip()
    load0 = os.getloadavg()
    print(f"CPU {cpu_model()} | {os.cpu_count()} cores | load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
          f" | Python {platform.python_version()} | {wrk_version}", flush=True)
    out: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_start": load0, "args": vars(args)}
    procs: list[Proc] = []
    redis = receiver = None
    work = Path(tempfile.mkdtemp(prefix="gwbench-"))        # short: redis' unix socket path lives here
    try:
        up_port = free_port()
        up = Proc("upstream", [sys.executable, __file__, "--serve-upstream", up_port], work / "upstream.log").start()
        procs.append(up)
        upstream = f"http://127.0.0.1:{up_port}/v1"
        sides = {"direct": Side("direct", f"{upstream}/chat/completions", {}, up, "raw ASGI on uvicorn (uvloop, httptools)")}
        wait_ready(sides["direct"], 30)
        if {"ours", "ours-traced"} & set(names):
            from llm_platform.serve.store import RedisServer
            redis = RedisServer(work / "redis").start()
            key = create_key(work)
        if "ours-traced" in names:
            from llm_platform.monitor.tracing import OTLPReceiver
            receiver = OTLPReceiver(keep=False).start()
            sides["ours-traced"] = start_ours("ours-traced", upstream, redis.url, key, work, tracing_endpoint=receiver.url)
            sides["ours-traced"].also = [redis.proc.pid]
        if "ours" in names:
            sides["ours"] = start_ours("ours", upstream, redis.url, key, work)
            sides["ours-pii"] = start_ours("ours-pii", upstream, redis.url, key, work, pii=True)
            sides["ours"].also = sides["ours-pii"].also = [redis.proc.pid]          # quotas and cache live there
            if args.vllm_url:
                sides["ours-vllm"] = start_ours("ours-vllm", args.vllm_url.rstrip("/"), redis.url, key, work,
                                                model=args.vllm_model)
        if "litellm" in names:
            sides["litellm"] = start_litellm(upstream, work, args.skip_install)
        if "portkey" in names:
            sides["portkey"] = start_portkey(upstream, work, args.skip_install)
        procs += [s.proc for n, s in sides.items() if n != "direct"]
        for n, s in sides.items():
            if n == "ours-vllm":
                wait_ready(s, 300, chat_body(model=args.vllm_model, max_tokens=4))
            elif n != "direct":
                wait_ready(s)
        print("versions: " + " | ".join(f"{n}: {s.version}" for n, s in sides.items()), flush=True)
        out["versions"] = {n: s.version for n, s in sides.items()}
        order = [sides[n] for n in names]

        out["wrk"] = measure_wrk(order, work, args.rounds, args.seconds, args.warmup)
        out["ttfb"] = measure_ttfb(order, args.streams)
        if "ours" in names:
            out["cache_hits"] = measure_cache_hits(sides["ours"], upstream, work, out["wrk"], args.seconds, args.warmup)
            out["pii"] = measure_pii(sides["ours"], sides["ours-pii"], work, args.rounds, args.seconds, args.warmup)
        if args.vllm_url and "ours" in names:
            out["vllm_ttft"] = measure_vllm(Side("vllm-direct", args.vllm_url.rstrip("/") + "/chat/completions"),
                                            sides["ours-vllm"], args.vllm_model)
        else:
            print("\ntime to first token on the real vLLM server: not measured (this script never starts vLLM; pass "
                  "--vllm-url and --vllm-model of a running one, with ours among --sides)")
        print_targets(out["wrk"], out["ttfb"], out.get("cache_hits"), names)
    finally:
        for p in reversed(procs):
            p.stop()
        if redis is not None:
            redis.stop()
        if receiver is not None:
            receiver.stop()
            out["traced_spans_received"] = receiver.received
            print(f"ours-traced (sample_rate {TRACE_RATE[0]}): {receiver.received} spans received over OTLP")
        load1 = os.getloadavg()
        out["loadavg_end"] = load1
        print(f"\nload average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (start {load0[0]:.2f}, "
              f"{os.cpu_count()} cores); logs in {work}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
