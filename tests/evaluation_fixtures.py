"""Helpers shared by tests/test_gate.py and tests/test_registry.py: evaluation folders in the
harness's contract, and a real MLflow sqlite registry with registered versions."""
import json
from pathlib import Path

from llm_platform.core import mlflow_experiment, write_json


def item(i, value, metric="exact", suite="golden", kind="binary", tags=(), higher_is_better=True) -> dict:
    return {"suite": suite, "item_id": f"{suite}-{i}", "metric": metric, "kind": kind, "value": float(value),
            "tags": list(tags), "higher_is_better": higher_is_better}


def eval_folder(path: Path, rows: list[dict], name: str = "demo", version: str | None = None,
                bench: dict | None = None) -> Path:
    "An evaluation folder as the harness writes it: results JSON (suite aggregates from the rows) and items.jsonl."
    path.mkdir(parents=True)
    suites: dict = {}
    for r in rows:
        suites.setdefault(r["suite"], {}).setdefault(r["metric"], []).append(r["value"])
    write_json(path / "evaluation_results.json", {
        "target": {"kind": "checkpoint", "name": name, "location": str(path), "model_version": version},
        "harness": {"name": "test-harness", "version": "1"},
        "suites": {s: {"n": max(len(v) for v in ms.values()), "metrics": {m: sum(v) / len(v) for m, v in ms.items()}}
                   for s, ms in suites.items()},
        "items_path": "items.jsonl", "created": "2026-11-30T12:00:00+00:00"})
    (path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if bench is not None:
        write_json(path / "benchmark_scores.json", bench)
    return path


def suite_rows(golden_passes: list[int], blocked: list[int], perplexity: list[float]) -> list[dict]:
    "Golden prompts (binary), a safety suite whose items are all must_block (binary) and held-out perplexity."
    return ([item(i, v) for i, v in enumerate(golden_passes)]
            + [item(i, v, "blocked", "safety", tags=["must_block"]) for i, v in enumerate(blocked)]
            + [item(i, v, "perplexity", "heldout", "continuous", higher_is_better=False) for i, v in enumerate(perplexity)])


def make_registry(root: Path, versions: int = 3, name: str = "demo") -> str:
    "A sqlite MLflow registry with `versions` versions of `name`, each from its own run with config params, metrics and a tiny file."
    uri = f"sqlite:///{root}/mlflow.db"
    client, exp = mlflow_experiment(uri, "llm_platform")
    client.create_registered_model(name)
    for i in range(versions):
        run = client.create_run(exp, run_name=f"run-{i}")
        rid = run.info.run_id
        for k, v in {"model.name": "tiny-llama", "model.source": "tiny", "train.method": "lora",
                     "train.max_steps": 10 * (i + 1), "data.path": "data/sample/chats.jsonl"}.items():
            client.log_param(rid, k, v)
        client.log_metric(rid, "03_evaluate.tuned.loss", 3.0 - 0.5 * i)
        adapter = root / f"adapter-{i}"
        adapter.mkdir()
        (adapter / "adapter_model.safetensors").write_bytes(bytes([i]) * 64)
        client.log_artifacts(rid, str(adapter), "02_train/adapter")
        client.set_terminated(rid)
        client.create_model_version(name, f"{run.info.artifact_uri}/02_train/adapter", run_id=rid, tags={
            "run_id": f"{name}-run-{i}", "git_commit": "0123abc", "method": "lora", "data_sha256": f"{i + 1:064x}"})
    return uri
