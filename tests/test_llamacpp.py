"""llama.cpp, the CPU backend: the 05_export step's GGUF files and their quality, a real `llama-server` on them through
the official client (chat, stream, stop, errors), template parity with training, LoRA adapters chosen per request
(directly and through the gateway by model name), and a killed server detected by `llm-platform serve`."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from llm_platform.config import ServingConfig
from llm_platform.core import read_json
from llm_platform.data.chat import render_chat
from llm_platform.llamacpp import llamacpp_available
from llm_platform.optimize.gguf import export_gguf, gguf_engine_speed, sha256_file
from llm_platform.serve.llamacpp import LlamaCppServer, resolve_backend

MESSAGES = [{"role": "user", "content": "Does Nimbus Notes work offline?"}]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llamacpp_is_built_and_auto_picks_it_on_cpu():
    "`make setup` builds llama.cpp; on this CPU host `serve.backend: auto` then chooses it."
    assert llamacpp_available(), "llama.cpp is not built: `make setup` (or `llm-platform llamacpp build`)"
    assert resolve_backend(ServingConfig(), "cpu") == "llamacpp"


@pytest.fixture(scope="module")
def export(tiny_run):
    return read_json(Path(tiny_run["run_dir"]) / "05_export" / "metrics.json")["metrics"]


@pytest.fixture(scope="module")
def llamacpp(tiny_run, export, tmp_path_factory):
    "llama-server on the tiny run's F16 file, named after the run."
    cfg = ServingConfig(port=free_port(), llamacpp={"parallel": 4, "ctx_size": 4096})
    with LlamaCppServer(export["files"]["f16"]["path"], cfg, name=tiny_run["run_id"],
                        log_path=tmp_path_factory.mktemp("llamacpp") / "server.log") as server:
        yield server


def test_export_step_writes_files_hashes_and_quality(tiny_run, export):
    files = export["files"]
    assert set(files) == {"f16", "q8_0", "q4_k_m"}
    for f in files.values():
        assert Path(f["path"]).stat().st_size == f["bytes"] and sha256_file(f["path"]) == f["sha256"]
    assert files["f16"]["bytes"] > files["q8_0"]["bytes"] > files["q4_k_m"]["bytes"]
    assert not (Path(tiny_run["run_dir"]) / "05_export" / "model-f32.gguf").exists()   # the F32 reference is not kept
    lora = export["lora"]
    assert lora and Path(lora["path"]).exists() and lora["quant"] == "lora-f16"
    q = export["quality"]
    assert export["f32_ppl"] > 1 and all(q[k]["ppl_ppl"] > 1 for k in files)
    assert abs(q["f16"]["ppl_vs_f32"]) < 0.01, q["f16"]            # F16 within 1% of F32 on held-out text
    assert q["f16"]["ppl_vs_f32"] == pytest.approx(q["f16"]["ppl_ppl"] / export["f32_ppl"] - 1)
    golden = export["golden_answers"]["f16"]
    assert len(golden) == 12 and all(0 <= q[k]["golden_agree"] <= 1 for k in files)
    speed = export["speed"]                       # llama.cpp alone on each file, at 1 and 8 sequences
    assert set(speed) == set(files) and all(set(s) == {"p1", "p8"} for s in speed.values()), speed
    assert all(s["p8"]["decode_tok_per_s"] > s["p1"]["decode_tok_per_s"] > 0 for s in speed.values()), speed
    assert export["speed_host"]["tokens"] == [48, 64] and export["speed_host"]["cpu"]


def test_engine_speed_of_an_exported_file(export):
    "llama-batched-bench on the run's F16 file: one row per parallel count, more sequences decode more tokens/s."
    rows = gguf_engine_speed(export["files"]["f16"]["path"], 24, 16, parallel=(1, 4), ctx=512)
    assert [r["parallel"] for r in rows] == [1, 4] and {r["prompt_tokens"] for r in rows} == {24}, rows
    assert all(r["gen_tokens"] == 16 and r["seconds"] > 0 and 0 < r["output_tok_per_s"] < r["decode_tok_per_s"]
               for r in rows), rows
    assert rows[1]["decode_tok_per_s"] > rows[0]["decode_tok_per_s"], rows   # batching pays even on 2 cores
    with pytest.raises(RuntimeError, match="must hold 8 x 128"):
        gguf_engine_speed(export["files"]["f16"]["path"], 64, 64, parallel=(8,), ctx=128)


def test_export_is_registered_beside_the_version(tiny_run, export):
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['runs_dir']}/mlflow.db")
    mv = client.get_model_version(tiny_run["registered_model"], tiny_run["registered_version"])
    for quant, f in export["files"].items():
        assert mv.tags[f"gguf.{quant}"].endswith(f"sha256:{f['sha256']}")
    arts = {Path(a.path).name for a in client.list_artifacts(tiny_run["mlflow_run_id"], "05_export/gguf")}
    assert {"model-f16.gguf", "model-q8_0.gguf", "model-q4_k_m.gguf", "adapter-f16.gguf"} <= arts


def test_chat_stream_and_models_through_the_openai_client(llamacpp):
    c = OpenAI(base_url=llamacpp.base_url, api_key="none", max_retries=0)
    assert llamacpp.served_model_name in [m.id for m in c.models.list().data]
    kw = dict(model=llamacpp.served_model_name, messages=MESSAGES, max_tokens=10, temperature=0)
    r = c.chat.completions.create(**kw)
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens > 0
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **kw)
                       if ch.choices)
    assert streamed == r.choices[0].message.content


def test_stop_sequence_ends_the_answer(llamacpp):
    c = OpenAI(base_url=llamacpp.base_url, api_key="none", max_retries=0)
    kw = dict(model=llamacpp.served_model_name, messages=MESSAGES, temperature=0, max_tokens=24)
    full = c.chat.completions.create(**kw).choices[0].message.content
    assert len(full) >= 8, full
    stop = full[4:7]
    r = c.chat.completions.create(stop=[stop], **kw)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == full[:full.index(stop)]


def test_bad_requests_get_openai_errors(llamacpp):
    c = OpenAI(base_url=llamacpp.base_url, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="content"):
        c.chat.completions.create(model=llamacpp.served_model_name, messages=[{"role": "user"}], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        c.chat.completions.create(model=llamacpp.served_model_name, messages=MESSAGES, max_tokens="many")


def test_served_prompt_is_the_trained_prompt(llamacpp, tiny_run):
    "Template parity: the tokens llama.cpp builds from the GGUF's template are the tokens training used."
    import json
    tok = AutoTokenizer.from_pretrained(tiny_run["model_dir"])
    root = llamacpp.base_url.removesuffix("/v1")
    rows = [json.loads(line) for line in (ROOT / "data/eval/template_parity.jsonl").read_text().splitlines() if line]
    c = OpenAI(base_url=llamacpp.base_url, api_key="none", max_retries=0)
    for row in rows:
        msgs = row["messages"][:-1] if row["messages"][-1]["role"] == "assistant" else row["messages"]
        ours = tok(render_chat(tok, msgs, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        prompt = httpx.post(f"{root}/apply-template", json={"messages": msgs}, timeout=30).json()["prompt"]
        theirs = httpx.post(f"{root}/tokenize", json={"content": prompt, "add_special": False, "parse_special": True},
                            timeout=30).json()["tokens"]
        assert theirs == ours, row["id"]
        r = c.chat.completions.create(model=llamacpp.served_model_name, messages=msgs, max_tokens=1)
        assert r.usage.prompt_tokens == len(ours), row["id"]


def _answer(url: str, body: dict) -> str:
    r = httpx.post(f"{url}/chat/completions", json={"messages": MESSAGES, "temperature": 0, "max_tokens": 12, **body},
                   timeout=60)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def test_adapters_chosen_per_request_and_by_model_name(tiny_run, export, llamacpp, tmp_path):
    """One llama-server holds the base model and the run's LoRA adapter (GGUF LoRA from 05_export): scale 1 answers
    like the merged model, scale 0 like the base; the gateway maps two model names onto the same server."""
    from llm_platform.config import load_config
    from llm_platform.serve.app import GatewayProcess
    from llm_platform.serve.check import gateway_for
    from llm_platform.serve.config import GatewayConfig
    base_dir = read_json(Path(tiny_run["run_dir"]) / "01_data" / "metrics.json")["metrics"]["model_dir"]
    base_gguf = export_gguf(base_dir, tmp_path / "base", ["f16"])[0]["path"]
    cfg = ServingConfig(port=free_port(), llamacpp={"parallel": 2, "ctx_size": 2048})
    with LlamaCppServer(base_gguf, cfg, name="base", loras=[export["lora"]["path"]], log_path=tmp_path / "l.log") as srv:
        tuned = _answer(srv.base_url, {"lora": [{"id": 0, "scale": 1.0}]})
        plain = _answer(srv.base_url, {"lora": [{"id": 0, "scale": 0.0}]})
        merged = _answer(llamacpp.base_url, {})
        assert tuned == merged, (tuned, merged)
        with LlamaCppServer(base_gguf, cfg.model_copy(update={"port": free_port()}), name="b",
                            log_path=tmp_path / "b.log") as only_base:
            assert plain == _answer(only_base.base_url, {})
        assert tuned != plain, "the adapter changed nothing: the test cannot tell adapters apart"
        # Through the gateway: two served names, one upstream, the adapter scale set per name.
        gw_cfg, key = gateway_for(srv.base_url, "tiny-base", "tiny/base", "base", tmp_path,
                                  load_config("configs/serving/gateway.yaml", kind=GatewayConfig), free_port())
        route = gw_cfg.models["tiny-base"].model_dump()
        rep = route["replicas"][0]
        models = {"tiny-base": {**route, "guardrails": None, "replicas": [{**rep, "body_extra": {"lora": [{"id": 0, "scale": 0.0}]}}]},
                  "tiny-tuned": {**route, "guardrails": None, "replicas": [{**rep, "version": "tiny/tuned",
                                                                             "body_extra": {"lora": [{"id": 0, "scale": 1.0}]}}]}}
        gw_cfg = GatewayConfig.model_validate({**gw_cfg.model_dump(), "models": models, "cache": {"enabled": False}})
        with GatewayProcess(gw_cfg, log_path=tmp_path / "gateway.log") as gw:
            c = OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
            ask = dict(messages=MESSAGES, temperature=0, max_tokens=12)
            r_t = c.chat.completions.with_raw_response.create(model="tiny-tuned", **ask)
            assert r_t.parse().choices[0].message.content == tuned and r_t.headers["x-model-version"] == "tiny/tuned"
            assert c.chat.completions.create(model="tiny-base", **ask).choices[0].message.content == plain


def test_serve_cli_uses_llamacpp_and_notices_a_killed_server(tiny_run, tmp_path):
    "`llm-platform serve` on a run's model picks llama.cpp (and the run's exported F16) on this CPU host; SIGKILL of llama-server ends it with the log's tail."
    port = free_port()
    env = {**os.environ, "LLM_PLATFORM_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    out_path = tmp_path / "cli.out"
    with open(out_path, "w") as out_file:
        cli = subprocess.Popen([sys.executable, "-m", "llm_platform.cli", "serve", "--model", tiny_run["model_dir"],
                                "--set", f"served_model_name={tiny_run['run_id']}", "--set", f"port={port}",
                                "--set", "llamacpp.parallel=2", "--set", "llamacpp.ctx_size=2048"],
                               cwd=ROOT, env=env, stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops it" not in out_path.read_text():    # the CLI says it is serving (health checked)
            assert cli.poll() is None and time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert tiny_run["run_id"] in [m["id"] for m in models["data"]]
        pids = subprocess.run(["pgrep", "-P", str(cli.pid), "-x", "llama-server"], capture_output=True,
                              text=True).stdout.split()            # the CLI's own child, by name
        assert len(pids) == 1, pids
        os.kill(int(pids[0]), signal.SIGKILL)
        cli.wait(timeout=60)
        out = out_path.read_text()
        assert cli.returncode != 0 and "the model server exited" in " ".join(out.split()), out
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
