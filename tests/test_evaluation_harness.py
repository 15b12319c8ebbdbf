"""The evaluation harness on real components: lm-eval on the tiny checkpoint, and on a live vLLM server.

The checkpoint runs build their own tiny models (seconds); the endpoint test uses the session's vLLM
server (tests/conftest.py) with a few items per suite, and checks that the served model scores like
the same folder evaluated as a checkpoint.
"""
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.config import load_config
from llm_platform.evaluation.contract import SUITES, EvaluationResults, pair_items, read_items
from llm_platform.evaluation.harness import EvalTarget, SuitesConfig, run_suites
from llm_platform.models import build_tiny_model, prepare_model

CFG = SuitesConfig(max_gen_toks=8, torch_threads=1)


@pytest.fixture(scope="module")
def tiny_dir():
    return prepare_model(load_config("configs/models/tiny.yaml"))


@pytest.fixture(scope="module")
def checkpoint_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-tiny")
    return out, run_suites(EvalTarget(kind="checkpoint", location=str(tiny_dir)), out_dir=out, limit=4, cfg=CFG)


def _own_nll_per_token(model_dir: Path, text: str) -> float:
    "Mean NLL per token of `text` after the tokenizer's BOS (or EOS), computed directly with transformers."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([[prefix] + ids])).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, torch.tensor(ids)).item()


def test_checkpoint_results_follow_the_contract(checkpoint_run, tiny_dir):
    out, res = checkpoint_run
    saved = EvaluationResults.model_validate_json((out / "evaluation_results.json").read_text())
    assert saved.model_dump() == res and saved.target.kind == "checkpoint" and saved.target.location == str(tiny_dir)
    assert saved.harness["name"] == "lm-eval" and saved.harness["version"].startswith("0.4")
    assert set(saved.suites) == set(SUITES) and not saved.skipped
    items = read_items(out / saved.items_path)
    for suite, s in saved.suites.items():
        rows = [r for r in items if r.suite == suite]
        assert s.n == 4 == len({r.item_id for r in rows}), suite
        for metric, mean in s.metrics.items():         # the suite means are the items' means
            vals = [r.value for r in rows if r.metric == metric]
            if vals:
                assert math.isclose(mean, sum(vals) / len(vals)), (suite, metric)
    assert all(r.value in (0.0, 1.0) for r in items if r.kind == "binary")
    ids = [json.loads(x)["id"] for x in Path("data/eval/golden.jsonl").read_text().splitlines()[:4]]
    assert [r.item_id for r in items if r.suite == "golden"] == ids
    # the random model answers noise: the guardrails still block the weapons prompt, and it fails the benign-free rest
    assert res["suites"]["template_parity"]["metrics"] == {"tokens_match": 1.0, "prompt_is_prefix": 1.0}
    assert res["suites"]["golden"]["metrics"]["pass"] == 0.0


def test_perplexity_matches_a_direct_computation(checkpoint_run, tiny_dir):
    out, _ = checkpoint_run
    text = json.loads(Path("data/eval/heldout.jsonl").read_text().splitlines()[1])["text"]
    row = next(r for r in read_items(out / "items.jsonl") if r.item_id == "heldout-01")
    assert row.metric == "nll_per_token" and row.kind == "continuous" and not row.higher_is_better
    assert row.value == pytest.approx(_own_nll_per_token(tiny_dir, text), rel=1e-4)


def test_two_models_pair_by_item_and_differ(checkpoint_run, tmp_path):
    "A second model (another seed) scores the same items; rows pair one to one and perplexities differ."
    out, _ = checkpoint_run
    cfg = load_config("configs/models/tiny.yaml")
    other = build_tiny_model(cfg.model_copy(update={"tiny": cfg.tiny.model_copy(update={"seed": 1})}), tmp_path / "m1")
    run_suites(EvalTarget(kind="checkpoint", location=str(other)), ["heldout_perplexity", "golden"], tmp_path / "b",
               limit=4, cfg=CFG)
    a, b = read_items(out / "items.jsonl"), read_items(tmp_path / "b" / "items.jsonl")
    pairs = pair_items(a, b)
    assert len(pairs) == len(b) == 8
    ppl = [v for k, v in pairs.items() if k[0] == "heldout_perplexity"]
    assert all(x != y for x, y in ppl)


def test_cli_runs_a_suite(tiny_dir, tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "run", "--target", f"checkpoint:{tiny_dir}", "--suites", "safety",
                                 "--limit", "2", "--out", str(tmp_path), "--set", "max_gen_toks=4"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "evaluation_results.json").read_text())
    assert list(res["suites"]) == ["safety"] and res["suites"]["safety"]["n"] == 2
    assert {r.tags[0] for r in read_items(tmp_path / "items.jsonl")} == {"must_block"}


class _Gateway(BaseHTTPRequestHandler):
    "An OpenAI-shaped server answering as the gateway does: 400 content_filter on a bomb, x-model-version on all."
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json"); self.send_header("x-model-version", "demo/3")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "demo", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        if self.path == "/v1/completions" and not isinstance(body.get("prompt"), str):
            return self._send(400, {"error": {"message": "send the prompt as a string, not token ids",
                                              "type": "invalid_request_error", "code": "prompt_not_text"}})
        if "bomb" in json.dumps(body.get("messages")):
            return self._send(400, {"error": {"message": "request blocked by moderation: weapons", "type": "invalid_request_error",
                                              "code": "content_filter", "param": "weapons"}})
        self._send(200, {"id": "x", "object": "chat.completion", "model": "demo", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Happy to help with that."}}]})

    def log_message(self, *a):
        pass


def test_gateway_block_counts_as_blocked_and_version_is_named(tmp_path, tiny_dir):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        res = run_suites(EvalTarget(kind="endpoint", location=url, name="demo", tokenizer=str(tiny_dir)),
                         ["safety", "template_parity", "heldout_perplexity"], tmp_path, limit=2, cfg=CFG)
    finally:
        server.shutdown()
    assert res["target"] == {"kind": "endpoint", "name": "demo", "location": url, "model_version": "demo/3"}
    assert list(res["suites"]) == ["safety"]          # the others are named with the reason, not scored as 0
    assert "/tokenize" in res["skipped"]["template_parity"] and "HTTP 400" in res["skipped"]["heldout_perplexity"]
    rows = {r.item_id: r.value for r in read_items(tmp_path / "items.jsonl") if r.metric == "correct"}
    assert rows == {"safe-bomb": 1.0, "safe-pipe-bomb": 1.0}


@pytest.mark.slow
def test_endpoint_scores_like_the_checkpoint_it_serves(vllm_server, tmp_path):
    "vLLM serving a folder and the folder itself: same items, parity holds, perplexity agrees."
    suites = ["golden", "heldout_perplexity", "template_parity"]       # safety: see the gateway test
    served = run_suites(EvalTarget(kind="endpoint", location=vllm_server.base_url, name=vllm_server.served_model_name,
                                   tokenizer=vllm_server.model_dir), suites, tmp_path / "served", limit=2, cfg=CFG)
    local = run_suites(EvalTarget(kind="checkpoint", location=vllm_server.model_dir), suites, tmp_path / "local",
                       limit=2, cfg=CFG)
    assert served["target"]["kind"] == "endpoint" and served["target"]["location"] == vllm_server.base_url
    assert not served["skipped"] and set(served["suites"]) == set(suites) == set(local["suites"])
    assert served["suites"]["template_parity"]["metrics"] == {"tokens_match": 1.0, "prompt_is_prefix": 1.0}
    pairs = pair_items(read_items(tmp_path / "local" / "items.jsonl"), read_items(tmp_path / "served" / "items.jsonl"))
    assert len(pairs) == sum(1 for _ in open(tmp_path / "served" / "items.jsonl"))
    for (suite, item, _), (a, b) in pairs.items():
        if suite == "heldout_perplexity":
            assert b == pytest.approx(a, rel=0.02), item


@pytest.mark.slow
def test_through_the_real_gateway(vllm_server, redis_server, tmp_path, monkeypatch):
    "The gateway in front of vLLM: its key, its x-model-version, its 400 content_filter on the bomb prompt."
    import socket

    from llm_platform.security.auth import APIKeyStore
    from llm_platform.serve.app import GatewayProcess
    from llm_platform.serve.config import GatewayConfig
    key, _ = APIKeyStore(tmp_path / "keys.json").create("eval", ["chat"])
    monkeypatch.setenv("EVAL_TEST_KEY", key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    cfg = GatewayConfig.model_validate({
        "port": port, "store": redis_server.url, "auth": {"key_store": str(tmp_path / "keys.json")},
        "audit": {"path": str(tmp_path / "audit.jsonl")}, "manager": {"state_dir": str(tmp_path / "state")},
        "models": {"tiny": {"replicas": [{"url": vllm_server.base_url, "version": "tiny-v7",
                                          "upstream_model": vllm_server.served_model_name}]}}})
    gw = GatewayProcess(cfg, log_path=tmp_path / "gw.log")
    gw.start()
    try:
        gw.wait_healthy(120)
        res = run_suites(EvalTarget(kind="endpoint", location=gw.url + "/v1", name="tiny", api_key_env="EVAL_TEST_KEY",
                                    tokenizer=vllm_server.model_dir),
                         ["golden", "safety", "heldout_perplexity", "template_parity"], tmp_path / "out", limit=2,
                         cfg=CFG)
    finally:
        gw.stop()
    assert res["target"]["model_version"] == "tiny-v7" and res["target"]["name"] == "tiny"   # from the golden answers
    assert set(res["skipped"]) == {"heldout_perplexity", "template_parity"}, res["skipped"]
    assert res["suites"]["safety"]["metrics"]["must_block_rate"] == 1.0    # both prompts: 400 content_filter
