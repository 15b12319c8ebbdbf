"""Optimization toolbox benchmark: every configured variant of a merged model against the fp32 model on the same
engine, side by side in one run (tokens/s at 1 and 8 clients, size, held-out perplexity, task scores).

    python bench/optimize_bench.py --model runs/<demo-run>/04_merge/model --data runs/<demo-run>/01_data \
        --config configs/optimize/default.yaml --out runs/optimize-bench

Prints the CPU model, the report table and each variant's speed-up over the fp32 model on its own engine; the
figures and the command go into docs/benchmarks.md ("Optimization toolbox"). Same code path as
`llm-platform optimize run --model ...` and the 07_optimize step.
"""
import argparse
import json
import platform
import subprocess
from pathlib import Path

from llm_platform.config import load_config
from llm_platform.core import iter_jsonl
from llm_platform.optimize.report import OptimizeConfig, render_report, run_optimize


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = next((line for line in out.splitlines() if line.startswith("Flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{name} ({', '.join(isa)}), {len(__import__('os').sched_getaffinity(0))} cores, {platform.machine()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="merged model folder")
    ap.add_argument("--data", required=True, type=Path, help="folder with train.tokens.jsonl / val.tokens.jsonl")
    ap.add_argument("--config", type=Path, default=Path("configs/optimize/default.yaml"))
    ap.add_argument("--out", type=Path, default=Path("runs/optimize-bench"))
    ap.add_argument("--limit", type=int, default=None, help="first N items of each suite")
    a = ap.parse_args()
    print("CPU:", cpu_model())
    cfg = load_config(a.config, kind=OptimizeConfig)
    cfg.limit = a.limit or cfg.limit
    rows = {s: [r for _, r in iter_jsonl(a.data / f"{s}.tokens.jsonl")] for s in ("train", "val")}
    report = run_optimize(cfg, a.model, a.out, rows["train"], rows["val"])
    print(render_report(report))
    for r in report["variants"]:
        print(f"{r['name']:>22} {r['engine']:>12}  speed-up vs fp32 on its engine: "
              + ", ".join(f"{k} {v:.2f}x" for k, v in r["speedup"].items()))
    print(json.dumps({"chosen": report["chosen"], "seconds": report["seconds"]}))


if __name__ == "__main__":
    main()
