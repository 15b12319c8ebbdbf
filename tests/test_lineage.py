"""Lineage end to end: a request the gateway audited -> registered version -> MLflow run -> pipeline run,
git commit, step parameters, data, split and base model hashes; on the session's real tiny pipeline run."""
import asyncio
import json
import uuid
from pathlib import Path

import pytest

from llm_platform.core import read_json, resolve_path, sha256_file
from llm_platform.lineage import LineageError, render_lineage, trace
from llm_platform.step_cache import tree_sha256

STEPS = ["01_data", "02_train", "03_evaluate", "04_merge", "05_export", "06_gate"]


def _audit_request(path: Path, request_id: str, model: str, version: str) -> None:
    "One request's record, written by the gateway's own writer with the fields `Gateway.finish` passes."
    from llm_platform.security.audit import AuditLog
    from llm_platform.serve.steps import AuditWriter

    async def write():
        w = AuditWriter(AuditLog(path, key_env=None), flush_ms=1).start()
        w.record("key-1", request_id=request_id, tenant="team-a", model=model, version=version, status=200,
                 stream=False, prompt_tokens=12, completion_tokens=8, latency_ms=41.5, cache="miss", guardrails={},
                 error=None)
        await asyncio.sleep(0.05)
        await w.close()
    asyncio.run(write())


@pytest.fixture(scope="module")
def audited(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("gateway") / "audit.jsonl"
    version = f"{tiny_run['registered_model']}/{tiny_run['registered_version']}"
    rid = f"req-{uuid.uuid4().hex}"
    _audit_request(path, f"req-{uuid.uuid4().hex}", "tiny", "-")      # another request first
    _audit_request(path, rid, "tiny", version)
    return {"path": path, "request_id": rid, "version": version,
            "uri": f"sqlite:///{tiny_run['runs_dir']}/mlflow.db"}


def test_request_is_traced_to_commit_parameters_and_hashes(tiny_run, audited):
    lin = trace(audited["request_id"], tiny_run["runs_dir"], audited["uri"], [audited["path"]])
    assert lin.kind == "request" and lin.request.line == 2 and lin.request.record["data"]["version"] == audited["version"]
    assert lin.model_version["run_id"] == tiny_run["mlflow_run_id"]
    assert lin.mlflow_run["tags"]["git_commit"] == tiny_run["git_commit"]
    run, run_dir = lin.run, tiny_run["run_dir"]
    assert run.run_id == tiny_run["run_id"] and run.git_commit == tiny_run["git_commit"] and lin.notes == []
    assert [s.step for s in run.steps] == STEPS and not any(s.reused for s in run.steps)
    for s in run.steps:
        assert s.parameters["run_dir"] == str(run_dir) and s.parameters["config_path"] == "configs/pipelines/tiny.yaml"
        assert s.git_commit == tiny_run["git_commit"]
    assert any(o.startswith("runs_dir=") for o in run.steps[1].parameters["overrides"])
    chats = resolve_path("data/sample/chats.jsonl")
    assert run.data_sha256 == {str(chats): sha256_file(chats)}
    assert run.splits_sha256["train.jsonl"] == sha256_file(run_dir / "01_data" / "train.jsonl")
    assert run.splits_sha256["val.tokens.jsonl"] == sha256_file(run_dir / "01_data" / "val.tokens.jsonl")
    base = read_json(run_dir / "01_data" / "metrics.json")["metrics"]["model_dir"]
    assert run.base_model == {"path": base, "sha256": tree_sha256(base), "recorded": True}


def test_version_and_run_queries_reach_the_same_run(tiny_run, audited):
    by_version = trace(audited["version"], tiny_run["runs_dir"], audited["uri"], [])
    by_run = trace(tiny_run["run_id"], tiny_run["runs_dir"], audited["uri"], [])
    assert by_version.kind == "version" and by_run.kind == "run"
    assert by_version.run == by_run.run and by_run.mlflow_run["run_id"] == tiny_run["mlflow_run_id"]
    assert by_run.model_version["version"] == tiny_run["registered_version"] and by_run.run.registered == audited["version"]


def test_cached_run_names_the_run_that_made_each_step(tiny_run, audited):
    from llm_platform.pipeline import run_pipeline
    ov = [f"runs_dir={tiny_run['runs_dir']}", f"mlflow.tracking_uri={audited['uri']}"]
    info = run_pipeline("configs/pipelines/tiny.yaml", ov, run_id=f"lineage-{uuid.uuid4().hex[:6]}", progress=False)
    lin = trace(info["run_id"], tiny_run["runs_dir"], audited["uri"], [])
    run = lin.run
    assert all(s.reused and s.made_by == tiny_run["run_id"] for s in run.steps)
    assert run.registered == audited["version"] and lin.model_version["tags"]["run_id"] == tiny_run["run_id"]
    assert all(s.parameters["run_dir"] == str(tiny_run["run_dir"]) for s in run.steps)   # the maker's parameters


def test_cli_prints_text_and_json(tiny_run, audited):
    from typer.testing import CliRunner

    from llm_platform.cli import app
    args = ["lineage", audited["request_id"], "--runs-dir", str(tiny_run["runs_dir"]), "--tracking-uri", audited["uri"],
            "--audit", str(audited["path"])]
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    chats = sha256_file(resolve_path("data/sample/chats.jsonl"))
    assert f"git       {tiny_run['git_commit']}" in text.output and chats in text.output
    assert f"version   {audited['version']}" in text.output
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["run"]["git_commit"] == tiny_run["git_commit"]
    missing = CliRunner().invoke(app, [*args[:1], "req-nope", *args[2:]])
    assert missing.exit_code == 1 and "req-nope" in missing.output


def test_unknown_version_is_an_error_naming_it(tiny_run, audited):
    with pytest.raises(LineageError, match="tiny/999"):
        trace("tiny/999", tiny_run["runs_dir"], audited["uri"], [])
    assert "lineage of" in render_lineage(trace(tiny_run["run_id"], tiny_run["runs_dir"], audited["uri"], []))
