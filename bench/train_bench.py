"""Training throughput: our default CPU recipe vs trl's SFTTrainer defaults, same model and data.

Counts real (unpadded) tokens per second, and reads them against the machine's measured fp32
matmul peak: 6 x params x tokens/s / peak (the share of the hardware a full forward+backward
would use; LoRA's backward is cheaper, so this is an upper-bound reading).

Both sides train the same LoRA adapter (configs/training/smollm2_135m.yaml: r16, all linear
layers) on the same tokenized sample chats. trl's side gets only what CPU needs to start
(`use_cpu=True`), the step count and token counting; everything else is SFTConfig's default
(batch 8, bf16 autocast, padded batches, torch's thread default). Ours is the preset as
shipped (fp32, batch 4, length-grouped padding-free batches, threads = cores), in one
process and as 2 DDP processes x 1 thread (`distributed.yaml`'s layout).

    .venv/bin/python bench/train_bench.py                      # SmolLM2-135M-Instruct
    .venv/bin/python bench/train_bench.py --model tiny --steps 20 --baseline-steps 10
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from llm_platform.config import load_config
from llm_platform.core import resolve_path
from llm_platform.data.chat import ChatFormatter, read_jsonl
from llm_platform.models import prepare_model
from llm_platform.train.launch import TrainJob, launch_training
from llm_platform.train.sft import load_for_training


def matmul_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def trl_defaults(model_path: Path, cfg, rows: list[dict], steps: int) -> dict:
    "trl's SFTTrainer with its default SFTConfig; only what CPU needs to start (use_cpu) and the step count."
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    model, tok = load_for_training(model_path, cfg, "trl", 512)
    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(output_dir=d, use_cpu=True, max_steps=steps, report_to=[],
                         include_num_input_tokens_seen="non_padding", save_strategy="no")
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"steps": steps, "tokens_seen": tokens, "train_seconds": seconds, "tokens_per_second": tokens / seconds,
            "settings": f"bf16={args.bf16}, batch {args.per_device_train_batch_size}, padded, "
                        f"{torch.get_num_threads()} threads"}


def ours(model_path: Path, cfg, rows_path: Path, steps: int, processes: int) -> dict:
    "Our preset through the same launcher the pipeline uses (a child process, like trl's side has none)."
    with tempfile.TemporaryDirectory() as d:
        cfg = cfg.model_copy(update={"max_steps": steps, "logging_steps": max(1, steps // 3),
                                     "checkpoint": cfg.checkpoint.model_copy(update={"every_steps": None}),
                                     "torch_threads": None if processes == 1 else 1,
                                     "distributed": cfg.distributed.model_copy(update={"num_processes": processes})})
        m = launch_training(TrainJob(train=cfg, model_path=str(model_path), train_path=str(rows_path),
                                     out_dir=d, max_length=256), subprocess_always=True)
    return {**m, "steps": m["steps"], "train_seconds": m["train_seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m", help="a preset name in configs/models/")
    ap.add_argument("--preset", default="configs/training/smollm2_135m.yaml", help="our training preset")
    ap.add_argument("--steps", type=int, default=24, help="steps for our recipe")
    ap.add_argument("--baseline-steps", type=int, default=8, help="steps for trl defaults (batch 8: twice ours)")
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    model_cfg = load_config(f"configs/models/{args.model}.yaml")
    model_path = prepare_model(model_cfg)
    recipe = load_config(args.preset)
    tok = AutoTokenizer.from_pretrained(model_path)
    rows = ChatFormatter(tok, 256).format_batch([r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))])
    params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_path).parameters())
    peak = matmul_gflops(threads)
    print(f"model {model_cfg.name} ({params / 1e6:.1f}M params) | {len(rows)} chats | {threads} cores | "
          f"{platform.machine()} | fp32 matmul peak {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as d:
        rows_path = Path(d) / "train.tokens.jsonl"
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        base = trl_defaults(model_path, recipe, rows, args.baseline_steps)
        one = ours(model_path, recipe, rows_path, args.steps, 1)
        two = ours(model_path, recipe, rows_path, args.steps, 2) if threads >= 2 else None
    print("\n| recipe | steps | real tokens | seconds | tokens/s | 6·N·tok/s / peak | ratio vs trl defaults |")
    print("|---|---|---|---|---|---|---|")
    table = [("trl SFTTrainer defaults (" + base["settings"] + ")", base),
             (f"llm_platform preset, 1 process x {threads} threads (fp32, batch {recipe.batch_size}, "
              "length-grouped, padding-free)", one)]
    if two:
        table.append(("llm_platform preset, 2 DDP processes x 1 thread (gloo)", two))
    for name, r in table:
        util = 6 * params * r["tokens_per_second"] / (peak * 1e9)
        print(f"| {name} | {r['steps']} | {r['tokens_seen']} | {r['train_seconds']:.1f} | "
              f"{r['tokens_per_second']:.1f} | {util:.1%} | {r['tokens_per_second'] / base['tokens_per_second']:.2f}x |")


if __name__ == "__main__":
    main()
