"""The papermill pipeline end to end on the tiny model: outputs, golden loss check, MLflow, resume."""
import json
import uuid
from pathlib import Path

import nbformat
import pytest

from llm_platform.core import read_json
from llm_platform.pipeline import PipelineStepError, run_pipeline

STEPS = ["01_data", "02_train", "03_evaluate", "04_merge", "06_gate"]


def test_every_step_ran_and_kept_its_notebook(tiny_run):
    run_dir = tiny_run["run_dir"]
    assert tiny_run["steps_done"] == STEPS
    for step in STEPS:
        manifest = read_json(run_dir / step / "metrics.json")
        assert manifest["status"] == "ok" and manifest["run_id"] == tiny_run["run_id"]
        assert manifest["git_commit"] and manifest["config"] == "tiny"
        nb = nbformat.read(run_dir / f"{step}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["parameters"]["run_dir"] == str(run_dir)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert (run_dir / "config.resolved.yaml").exists()


def test_data_step_loses_nothing(tiny_run):
    m = read_json(tiny_run["run_dir"] / "01_data" / "metrics.json")
    c = m["metrics"]
    assert c["read"] == c["splits"]["train"] + c["splits"]["val"] + c["rejected"] == 192
    assert c["splits"]["train"] > 0 and c["splits"]["val"] > 0
    data = tiny_run["run_dir"] / "01_data"
    assert sum(1 for _ in open(data / "rejects.jsonl")) == c["rejected"]
    assert (data / "data_card.md").exists() and (data / "token_lengths.png").exists()
    assert list(m["inputs_sha256"].values())[0]        # the input file's hash is recorded


def test_finetuning_lowers_heldout_loss(tiny_run):
    "Golden check: the fine-tuned model's held-out loss is below the base model's."
    m = read_json(tiny_run["run_dir"] / "03_evaluate" / "metrics.json")["metrics"]
    assert m["tuned"]["loss"] < m["base"]["loss"] - 0.05, (m["base"]["loss"], m["tuned"]["loss"])
    assert m["loss_improved"] is True
    assert m["tuned"]["golden"]["total"] == 12


def test_training_metrics_are_real(tiny_run):
    m = read_json(tiny_run["run_dir"] / "02_train" / "metrics.json")["metrics"]
    assert m["backend"] == "trl" and m["steps"] == 20
    assert m["tokens_seen"] > 0 and m["tokens_per_second"] > 0
    assert m["last_logged_loss"] < m["first_logged_loss"]
    assert (tiny_run["run_dir"] / "02_train" / "loss_curve.png").stat().st_size > 1000


def test_merged_model_is_servable_folder(tiny_run):
    model_dir = tiny_run["run_dir"] / "04_merge" / "model"
    assert str(model_dir) == tiny_run["model_dir"]
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names


def test_mlflow_has_params_metrics_and_notebooks(tiny_run):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['runs_dir']}/mlflow.db")
    run = client.get_run(tiny_run["mlflow_run_id"])
    assert run.data.params["train.max_steps"] == "20"
    assert run.data.tags["git_commit"] == tiny_run["git_commit"]
    assert run.data.tags["train.backend"] == "trl" and run.data.tags["train.method"] == "lora"
    assert run.data.metrics["03_evaluate.tuned.loss"] < run.data.metrics["03_evaluate.base.loss"]
    assert len(client.get_metric_history(run.info.run_id, "train.loss")) >= 2
    notebooks = {a.path for a in client.list_artifacts(run.info.run_id, "notebooks")}
    assert notebooks == {f"notebooks/{s}.ipynb" for s in STEPS}
    adapter = {a.path for a in client.list_artifacts(run.info.run_id, "02_train/adapter")}
    assert "02_train/adapter/adapter_model.safetensors" in adapter


def test_training_run_is_a_registered_model_version(tiny_run):
    from mlflow.tracking import MlflowClient

    from llm_platform.core import sha256_file
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['runs_dir']}/mlflow.db")
    version = client.get_model_version(tiny_run["registered_model"], tiny_run["registered_version"])
    assert version.run_id == tiny_run["mlflow_run_id"] and version.source.endswith("02_train/adapter")
    assert version.tags["git_commit"] == tiny_run["git_commit"] and version.tags["method"] == "lora"
    assert version.tags["data_sha256"] == sha256_file(Path("data/sample/chats.jsonl").resolve())
    assert version.tags["run_id"] == tiny_run["run_id"]


def test_gate_step_evaluates_the_run_and_its_first_version_becomes_champion(tiny_run):
    "06_gate ran the harness on the merged model; with no champion yet, the version is promoted as an audited override."
    from llm_platform.registry.models import list_versions, show_version
    from llm_platform.security.audit import verify_log
    uri, name, version = f"sqlite:///{tiny_run['runs_dir']}/mlflow.db", tiny_run["registered_model"], tiny_run["registered_version"]
    g = read_json(tiny_run["run_dir"] / "06_gate" / "metrics.json")["metrics"]
    results = read_json(Path(g["challenger_dir"]) / "evaluation_results.json")
    assert {"golden", "safety", "instruction_following"} <= set(results["suites"])
    assert results["target"]["location"] == read_json(tiny_run["run_dir"] / "04_merge" / "metrics.json")["metrics"]["model_dir"]
    items = (Path(g["challenger_dir"]) / "items.jsonl").read_text().splitlines()
    assert len(items) >= 3 * len(results["suites"])                       # limit 3 items per suite, >= 1 metric each
    champions = [v.version for v in list_versions(name, uri) if "champion" in v.aliases]
    gate = tiny_run["gate"]
    assert gate["version"] == f"{name}/{version}" and gate["promoted"] and gate["champion_before"] is None
    assert gate["override"] and champions == [version]
    shown = show_version(name, version, uri)
    assert {f"model_version_{version}/{f}" for f in ("model_card.md", "evaluation_results.json",
                                                        "benchmark_scores.json")} <= set(shown["artifacts"])
    assert shown["tags"]["promotion.override"] == "true" and "no champion" in shown["tags"]["promotion.override_reason"]
    assert verify_log(tiny_run["runs_dir"] / "registry" / "audit.jsonl").ok


def test_failed_step_can_be_resumed(runs_dir, tmp_path):
    "A step that fails stops the run with a resume command; after the cause is fixed, resume finishes it."
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"prompt": "Is there dark mode?", "expected": "Dark"}\n{"prompt": broken\n')
    run_id = f"resume-{uuid.uuid4().hex[:6]}"
    overrides = [f"runs_dir={runs_dir}", "mlflow.enabled=false", "train.max_steps=2", f"evaluate.golden_path={golden}",
                 "evaluate.require_improvement=false"]
    with pytest.raises(PipelineStepError, match=f"resume with: llm-platform pipeline run --resume {run_id}") as e:
        run_pipeline("configs/pipelines/tiny.yaml", overrides, run_id=run_id, progress=False)
    assert "03_evaluate" in str(e.value) and "golden.jsonl:2" in str(e.value)
    info = json.loads((runs_dir / run_id / "run.json").read_text())
    assert info["steps_done"] == ["01_data", "02_train"] and info["failed_step"] == "03_evaluate"
    trained_at = (runs_dir / run_id / "02_train" / "metrics.json").stat().st_mtime

    golden.write_text('{"prompt": "Is there dark mode?", "expected": "Dark"}\n')
    info = run_pipeline("configs/pipelines/tiny.yaml", [f"runs_dir={runs_dir}"], run_id=run_id, resume=True,
                        progress=False)
    assert info["steps_done"] == STEPS and "failed_step" not in info
    assert (runs_dir / run_id / "02_train" / "metrics.json").stat().st_mtime == trained_at   # not retrained


def test_existing_run_id_is_not_overwritten(tiny_run):
    with pytest.raises(FileExistsError, match="--resume"):
        run_pipeline("configs/pipelines/tiny.yaml", [f"runs_dir={tiny_run['runs_dir']}"], run_id=tiny_run["run_id"])
