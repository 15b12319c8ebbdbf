"""Training on a CUDA GPU: the SmolLM2 LoRA preset with plain trl + peft (bf16) beside unsloth's fast path,
same data, steps and seed; QLoRA 4-bit (bitsandbytes) both ways; and the same job as a one-GPU torchrun
(nccl) launch through `launch_training`.

Each case runs in its own process (unsloth patches transformers, trl and peft when imported, and peak
GPU memory is per process), so a case is one command and `report` reads them side by side:

    python bench/train_gpu_bench.py run trl-lora     --model smollm2 --out-dir gpu-bench
    python bench/train_gpu_bench.py run unsloth-lora --model smollm2 --out-dir gpu-bench
    python bench/train_gpu_bench.py report gpu-bench          # markdown table, hardware, versions

Cases: trl-lora, unsloth-lora, trl-qlora, unsloth-qlora, torchrun-lora. The preset is
configs/training/smollm2_135m.yaml (r16 on all linear layers, lr 3e-4, cosine) at its global batch
(4) in one process; the base weights load in bf16 on CUDA (fp32 on CPU, where this bench also runs,
minus the unsloth cases, for checking it). Tokens/s counts real (unpadded) tokens seen by the trainer.
"""
import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

CASES = {                       # case: (trainer backend setting, method, through torchrun)
    "trl-lora": ("never", "lora", False),
    "unsloth-lora": ("always", "lora", False),
    "trl-qlora": ("never", "qlora", False),
    "unsloth-qlora": ("always", "qlora", False),
    "torchrun-lora": ("never", "lora", True),
}
MODELS = {                      # --model name: (config, overrides)
    "smollm2": ("configs/models/smollm2_135m.yaml", {}),
    "tiny": ("configs/models/tiny.yaml", {}),
    # SmolLM2-135M's shape with random weights: the same speed and memory, not the same losses
    # (for a GPU machine that cannot be given the bundled GGUF).
    "smollm2-shape": ("configs/models/tiny.yaml", {
        "name": "smollm2-135m-shape-random", "tiny.hidden_size": 576, "tiny.num_hidden_layers": 30,
        "tiny.num_attention_heads": 9, "tiny.num_key_value_heads": 3, "tiny.intermediate_size": 1536}),
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo",
                 "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run_case(case: str, model: str, work: Path, steps: int, max_length: int) -> dict:
    setting, method, torchrun = CASES[case]
    if setting == "always":             # before transformers / trl / peft, so its patches apply
        from llm_platform.train.sft import import_unsloth_first
        import_unsloth_first()
    import torch
    from transformers import AutoTokenizer

    from llm_platform.config import load_config
    from llm_platform.core import resolve_path
    from llm_platform.data.chat import ChatFormatter, read_jsonl
    from llm_platform.models import prepare_model
    from llm_platform.train.launch import TrainJob, launch_training
    cuda = torch.cuda.is_available()
    dtype = "bfloat16" if cuda else "float32"
    model_path = prepare_model(load_config(*MODELS.get(model, (model, {}))))
    cfg = load_config("configs/training/smollm2_135m.yaml", {
        "method": method, "unsloth": setting, "max_steps": steps, "batch_size": 4, "logging_steps": 5,
        "distributed.num_processes": 1, "torch_threads": None, "checkpoint.every_steps": None,
        "quantization.compute_dtype": dtype})
    tok = AutoTokenizer.from_pretrained(model_path)
    rows = ChatFormatter(tok, max_length).format_batch(
        [r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))])
    data = work / "train.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = TrainJob(train=cfg, model_path=str(model_path), train_path=str(data), out_dir=str(work / "run"),
                   max_length=max_length, dtype=dtype)
    t0 = time.perf_counter()
    metrics = launch_training(job, torchrun=torchrun)
    return {**metrics, "wall_seconds": round(time.perf_counter() - t0, 2), "rows": len(rows), "dtype": dtype}


def cmd_run(a) -> int:
    out_dir = Path(a.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"case": a.case, "model": a.model, "steps": a.steps, "cpu": cpu_model()}
    try:
        import torch
        if CASES[a.case][0] == "always" and not torch.cuda.is_available():
            raise RuntimeError(f"{a.case} needs CUDA (unsloth runs on GPUs only)")
        work = Path(a.work_dir).resolve() / a.case if a.work_dir else out_dir / "work" / a.case
        result |= {"ok": True, **run_case(a.case, a.model, work, a.steps, a.max_length)}
    except Exception as e:          # the report shows what broke, and the other cases still run
        result |= {"ok": False, "error": f"{type(e).__name__}: {e}"[-2000:], "traceback": traceback.format_exc()[-4000:]}
        print(result["traceback"], file=sys.stderr)
    result["versions"] = versions()
    (out_dir / f"{a.case}.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result.get(k) for k in ("case", "ok", "backend", "tokens_per_second", "peak_gpu_memory_mb",
                                                 "last_logged_loss", "error")}, default=str))
    return 0 if result["ok"] else 1


def cmd_report(a) -> int:
    results = [json.loads(p.read_text()) for p in sorted(Path(a.out_dir).glob("*.json"))]
    results.sort(key=lambda r: list(CASES).index(r["case"]) if r["case"] in CASES else 99)
    if not results:
        raise SystemExit(f"{a.out_dir}: no case results (*.json)")
    gpu = next((r.get("gpu") for r in results if r.get("gpu")), "no GPU")
    print(f"GPU: {gpu}; CPU: {results[0]['cpu']}; model: {results[0]['model']}, {results[0]['steps']} steps")
    base = next((r for r in results if r["case"] == "trl-lora" and r.get("ok")), None)
    # The ratio is by time for the same steps over the same rows: unsloth's trainer counts the tokens it
    # saw differently (padding included), so its tokens/s reads a few % high against trl's.
    print("| case | backend | ok | tokens/s | speed vs trl-lora | train s | peak GPU MiB (alloc / reserved) "
          "| loss first -> last | train loss | dist |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if not r.get("ok"):
            print(f"| {r['case']} | | FAILED: {r.get('error', '')[:160]} | | | | | | | |")
            continue
        ratio = f"{base['train_seconds'] / r['train_seconds']:.2f}x" if base and base["steps"] == r["steps"] else ""
        mem = (f"{r['peak_gpu_memory_mb']:.0f} / {r['peak_gpu_reserved_mb']:.0f}" if r.get("peak_gpu_memory_mb")
               else "")
        print(f"| {r['case']} | {r['backend']} | yes | {r['tokens_per_second']:.0f} | {ratio} | {r['train_seconds']:.1f} "
              f"| {mem} | {r['first_logged_loss']:.3f} -> {r['last_logged_loss']:.3f} | {r['train_loss']:.3f} "
              f"| {r.get('dist_backend') or '-'} |")
    print("versions:", json.dumps({r["case"]: r["versions"] for r in results}, default=str))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one case in this process (torchrun-lora starts its own)")
    r.add_argument("case", choices=list(CASES))
    r.add_argument("--model", default="smollm2", help=f"{' | '.join(MODELS)} | a configs/models/*.yaml path")
    r.add_argument("--out-dir", required=True, help="the case's result goes to <out-dir>/<case>.json")
    r.add_argument("--work-dir", help="training data, checkpoints and adapter (default: <out-dir>/work)")
    r.add_argument("--steps", type=int, default=60)
    r.add_argument("--max-length", type=int, default=256, help="the demo pipeline's data.max_length")
    s = sub.add_parser("report", help="print the cases in --out-dir side by side")
    s.add_argument("out_dir")
    s.add_argument("--json", help="also write all the cases' results to this file")
    a = p.parse_args(argv)
    return cmd_run(a) if a.cmd == "run" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
