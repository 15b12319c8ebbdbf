"""Step cache: the tiny pipeline run twice through the CLI, into a fresh runs folder.

The first run executes every step (empty cache); the second finds every step unchanged and links
it from the first. Each run is its own process (`python -m llm_platform.cli pipeline run`), so the
seconds include interpreter start, imports, hashing, and MLflow logging: what a user waits for.

    .venv/bin/python bench/pipeline_cache_bench.py
    .venv/bin/python bench/pipeline_cache_bench.py --config configs/pipelines/tiny.yaml --keep /tmp/runs
"""
import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run(config: str, runs: Path, run_id: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "llm_platform.cli", "pipeline", "run", "--config", config, "--run-id", run_id,
           "--set", f"runs_dir={runs}", "--set", f"mlflow.tracking_uri=sqlite:///{runs}/mlflow.db"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t, json.loads((runs / run_id / "run.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/pipelines/tiny.yaml")
    ap.add_argument("--keep", type=Path, help="runs folder to use and keep (default: a temporary one)")
    a = ap.parse_args()
    runs = a.keep or Path(tempfile.mkdtemp(prefix="cache-bench-"))
    runs.mkdir(parents=True, exist_ok=True)
    print(f"cpu: {cpu_model()} ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores)")
    first_s, first = run(a.config, runs, "first")
    second_s, second = run(a.config, runs, "second")
    print(f"first run (every step executed): {first_s:7.1f} s  steps {first['step_seconds']}")
    print(f"second run (unchanged, cached):  {second_s:7.1f} s  reused {sorted(second.get('reused_from', {}))}")
    print(f"ratio: {first_s / second_s:.1f}x faster; runs in {runs}")


if __name__ == "__main__":
    main()
