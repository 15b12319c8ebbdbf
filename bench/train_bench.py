"""LoRA training throughput: our CPU recipe vs trl's SFTTrainer defaults, same model and data.

Counts real (unpadded) tokens per second, and reads them against the machine's measured fp32
matmul peak: 6 x params x tokens/s / peak (the share of the hardware a full forward+backward
would use; LoRA's backward is cheaper, so this is an upper-bound reading).

    .venv/bin/python bench/train_bench.py                      # SmolLM2-135M-Instruct, 12 + 3 steps
    .venv/bin/python bench/train_bench.py --model tiny --steps 20
"""
import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from llm_platform.config import TrainConfig, load_config
from llm_platform.core import resolve_path
from llm_platform.data.chat import ChatFormatter, read_jsonl
from llm_platform.models import prepare_model
from llm_platform.train.sft import load_for_training, train_lora


def matmul_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def trl_defaults(model_path: Path, cfg: TrainConfig, rows: list[dict], steps: int) -> dict:
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
            "settings": f"bf16={args.bf16}, batch={args.per_device_train_batch_size}, "
                        f"grad_ckpt={args.gradient_checkpointing}, threads={torch.get_num_threads()}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m", help="a preset name in configs/models/")
    ap.add_argument("--steps", type=int, default=12, help="steps for our recipe")
    ap.add_argument("--baseline-steps", type=int, default=3, help="steps for trl defaults (slow on CPU)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model_cfg = load_config(f"configs/models/{args.model}.yaml")
    model_path = prepare_model(model_cfg)
    recipe = load_config("configs/pipelines/demo.yaml").train.model_copy(
        update={"max_steps": args.steps, "torch_threads": args.threads, "logging_steps": 4})
    tok = AutoTokenizer.from_pretrained(model_path)
    rows = ChatFormatter(tok, 256).format_batch([r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))])
    params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_path).parameters())
    peak = matmul_gflops(args.threads)
    print(f"model {model_cfg.name} ({params / 1e6:.1f}M params) | {len(rows)} chats | {args.threads} threads | "
          f"{platform.machine()} | fp32 matmul peak {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as d:
        ours = train_lora(recipe, model_path, rows, Path(d), max_length=256)
    base = trl_defaults(model_path, recipe, rows, args.baseline_steps)
    print("\n| recipe | steps | real tokens | seconds | tokens/s | 6·N·tok/s / peak | ratio vs trl defaults |")
    print("|---|---|---|---|---|---|---|")
    for name, r in [("trl SFTTrainer defaults (" + base["settings"] + ")", base),
                    (f"llm_platform CPU recipe (fp32, batch {recipe.batch_size}, no grad ckpt, "
                     f"{args.threads} threads)", ours)]:
        util = 6 * params * r["tokens_per_second"] / (peak * 1e9)
        print(f"| {name} | {r['steps']} | {r['tokens_seen']} | {r['train_seconds']:.1f} | "
              f"{r['tokens_per_second']:.1f} | {util:.1%} | {r['tokens_per_second'] / base['tokens_per_second']:.2f}x |")


if __name__ == "__main__":
    main()
