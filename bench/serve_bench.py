"""Serving throughput: vLLM's OpenAI server at N concurrent clients vs plain transformers generate.

Same model, same prompts, same number of output tokens per prompt (EOS ignored on both sides,
so every request produces exactly --max-tokens tokens), fp32, run side by side in one process.

    .venv/bin/python bench/serve_bench.py                       # SmolLM2-135M-Instruct (converted once)
    .venv/bin/python bench/serve_bench.py --model runs/<id>/04_merge/model --prompts 16

Prints output tokens/s for each engine and the ratio vLLM / transformers.
"""
import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from openai import OpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_platform.config import load_config
from llm_platform.core import resolve_path
from llm_platform.data.chat import read_jsonl, render_chat
from llm_platform.models import prepare_model
from llm_platform.serve.vllm_server import VLLMServer


def prompts_from_sample(n: int) -> list[list[dict]]:
    records = read_jsonl(resolve_path("data/sample/chats.jsonl"))
    return [[{"role": "user", "content": r["messages"][0]["content"]}] for r in records[:n]]


def bench_transformers(model_dir, chats, max_tokens, batch_size, threads) -> dict:
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [render_chat(tok, c, add_generation_prompt=True) for c in chats]
    latencies, produced = [], 0
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i: i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        s = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        latencies += [time.perf_counter() - s] * len(texts[i: i + batch_size])
        produced += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    seconds = time.perf_counter() - t0
    return {"tokens": produced, "seconds": seconds, "tok_per_s": produced / seconds,
            "p50_s": statistics.median(latencies)}


def bench_vllm(server: VLLMServer, chats, max_tokens, clients) -> dict:
    client = OpenAI(base_url=server.base_url, api_key="none", timeout=600)

    def one(chat):
        s = time.perf_counter()
        r = client.chat.completions.create(model=server.served_model_name, messages=chat, max_tokens=max_tokens,
                                           temperature=0, extra_body={"ignore_eos": True})
        return r.usage.completion_tokens, time.perf_counter() - s

    one(chats[0])  # warm-up request, not timed
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, chats))
    seconds = time.perf_counter() - t0
    produced = sum(n for n, _ in results)
    return {"tokens": produced, "seconds": seconds, "tok_per_s": produced / seconds,
            "p50_s": statistics.median(s for _, s in results)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the converted SmolLM2 preset)")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the transformers baselines")
    ap.add_argument("--serving", default="configs/serving/vllm_config.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=["cpu.enforce_eager=true", "port=8031"],
                    help="serving overrides (default: eager start, port 8031)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    model_dir = Path(args.model) if args.model else prepare_model(load_config("configs/models/smollm2_135m.yaml"))
    chats = prompts_from_sample(args.prompts)
    print(f"model {model_dir} | {len(chats)} prompts x {args.max_tokens} tokens | {platform.processor() or platform.machine()}"
          f" | torch {torch.__version__}")
    rows = {}
    rows["transformers, 1 prompt at a time"] = bench_transformers(model_dir, chats, args.max_tokens, 1, args.threads)
    print("done: transformers sequential", flush=True)
    rows[f"transformers, batch {args.clients}"] = bench_transformers(model_dir, chats, args.max_tokens, args.clients,
                                                                    args.threads)
    print("done: transformers batched", flush=True)
    cfg = load_config(args.serving, args.overrides)
    with VLLMServer(model_dir, cfg) as server:
        rows[f"vLLM server, {args.clients} concurrent clients"] = bench_vllm(server, chats, args.max_tokens, args.clients)
        rows["vLLM server, 1 client"] = bench_vllm(server, chats[: max(4, len(chats) // 4)], args.max_tokens, 1)
    base = rows["transformers, 1 prompt at a time"]["tok_per_s"]
    print("\n| engine | output tokens | seconds | output tok/s | p50 latency s | ratio vs transformers 1-at-a-time |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tokens']} | {r['seconds']:.1f} | {r['tok_per_s']:.1f} | {r['p50_s']:.2f} | "
              f"{r['tok_per_s'] / base:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
