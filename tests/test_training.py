"""Training on the tiny model, for real: 2-process DDP (gloo) parity, resume after SIGKILL,
a 3-trial Optuna study with MLflow child runs, DPO through the CLI, QLoRA and full fine-tuning
through the pipeline."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_platform.config import SearchSpaceConfig, TrainConfig, load_config
from llm_platform.core import read_json
from llm_platform.train.launch import TrainJob, launch_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    "Tokenized rows of the sample chats for the tiny model, as the data step writes them."
    from transformers import AutoTokenizer

    from llm_platform.data.prepare import prepare_dataset
    from llm_platform.models import prepare_model
    cfg = load_config("configs/pipelines/tiny.yaml")
    model = prepare_model(cfg.model)
    out = tmp_path_factory.mktemp("tiny-data")
    prepare_dataset(cfg.data, AutoTokenizer.from_pretrained(model), out)
    return {"model": str(model), "train": str(out / "train.tokens.jsonl"), "val": str(out / "val.tokens.jsonl")}


def _job(tiny_data, out: Path, **train) -> TrainJob:
    base = {"max_steps": 12, "batch_size": 8, "learning_rate": 3e-3, "logging_steps": 1,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    return TrainJob(train=TrainConfig(**{**base, **train}), model_path=tiny_data["model"],
                    train_path=tiny_data["train"], out_dir=str(out), max_length=256)


def _losses(out: Path) -> list[float]:
    return [h["loss"] for h in read_json(out / "log_history.json") if "loss" in h]


def _adapter(out: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(out / "adapter" / "adapter_model.safetensors")


def test_two_process_ddp_matches_single_process(tiny_data, tmp_path):
    """2 gloo processes x batch 4 == 1 process x batch 8 (itself under torchrun): same global batches, same updates.
    (Length grouping is off: it forms its batches per rank, so only the random sampler gives identical batches.)"""
    one = launch_training(_job(tiny_data, tmp_path / "one", group_by_length=False, padding_free=True, torch_threads=1),
                          torchrun=True)    # one thread a process on both sides: the same reductions
    two = launch_training(_job(tiny_data, tmp_path / "two", group_by_length=False, padding_free=True, batch_size=4,
                               distributed={"num_processes": 2, "master_port": 29531}))
    assert one["processes"] == 1 and two["processes"] == 2 and one["steps"] == two["steps"] == 12
    assert one["dist_backend"] == two["dist_backend"] == "gloo" and "peak_gpu_memory_mb" not in one
    assert two["tokens_seen"] == one["tokens_seen"]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 12 and a[-1] < a[0]
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 1e-4, (a, b)
    wa, wb = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-3


def test_resume_after_sigkill_reaches_the_same_result(tiny_data, tmp_path):
    steps, ck = 20, {"every_steps": 5, "keep": 3}
    ref = launch_training(_job(tiny_data, tmp_path / "ref", max_steps=steps, checkpoint=ck))    # uninterrupted, in-process

    out = tmp_path / "killed"
    job = _job(tiny_data, out, max_steps=steps, checkpoint=ck)
    out.mkdir(); (out / "job.json").write_text(job.model_dump_json())
    proc = subprocess.Popen([sys.executable, "-m", "llm_platform.train.launch", str(out / "job.json")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint-10" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert not (out / "adapter").exists()                       # it really died mid-run
    done = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert 10 <= done[-1] < steps, done

    resumed = launch_training(job, subprocess_always=True)
    assert resumed["steps"] == ref["steps"] == steps
    assert resumed["resumed_from_step"] is not None and resumed["resumed_from_step"] >= 10
    assert abs(_losses(out)[-1] - _losses(tmp_path / "ref")[-1]) < 0.01 * _losses(tmp_path / "ref")[-1]
    wa, wb = _adapter(out), _adapter(tmp_path / "ref")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-3


def test_checkpoints_are_never_silently_discarded(tiny_data, tmp_path):
    out = tmp_path / "run"
    launch_training(_job(tiny_data, out, max_steps=4, checkpoint={"every_steps": 2}))
    with pytest.raises(FileExistsError, match="resume=never"):
        launch_training(_job(tiny_data, out, max_steps=4, checkpoint={"every_steps": 2, "resume": "never"}))
    with pytest.raises(ValueError, match="learning_rate"):
        launch_training(_job(tiny_data, out, max_steps=4, learning_rate=1e-4, checkpoint={"every_steps": 2}))
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        launch_training(_job(tiny_data, tmp_path / "fresh", max_steps=4,
                             checkpoint={"every_steps": 2, "resume": "require"}))


def test_optuna_study_three_trials_with_mlflow_children(tiny_data, tmp_path):
    from mlflow.tracking import MlflowClient

    from llm_platform.data.chat import read_jsonl
    from llm_platform.train.tune import tune
    # trial 0 is the base config (learns), trial 1 a learning rate that cannot learn: pruned at its first evaluation
    space = SearchSpaceConfig(params={"learning_rate": {"type": "categorical", "choices": [3e-3, 1e-9]},
                                      "lora.r": {"type": "categorical", "choices": [4, 8]},
                                      "lora.dropout": {"low": 0.0, "high": 0.1}}, trials=3, startup_trials=1)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = TrainConfig(learning_rate=3e-3, lora={"r": 8, "dropout": 0.0}, max_steps=8, batch_size=8,
                       logging_steps=4, eval_steps=2)
    s = tune(base, space, Path(tiny_data["model"]), read_jsonl(tiny_data["train"]), read_jsonl(tiny_data["val"]),
             tmp_path / "study", max_length=256, mlflow_uri=uri, experiment="tune-test",
             enqueue=[{"learning_rate": 1e-9, "lora.r": 8, "lora.dropout": 0.0}])
    assert s["trials"] == 3 and s["complete"] + s["pruned"] == 3 and s["complete"] >= 1 and s["pruned"] >= 1, s
    assert s["best_params"]["learning_rate"] == 3e-3
    best = load_config(s["best_config"], kind=TrainConfig)
    assert best.learning_rate == pytest.approx(s["best_params"]["learning_rate"]) and best.lora.r == s["best_params"]["lora.r"]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tune-test").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["state"] for c in children} <= {"complete", "pruned"}
    assert parents[0].data.metrics["best_eval_loss"] == pytest.approx(s["best_eval_loss"])
    # a rerun on the same folder continues the study instead of starting over
    s2 = tune(TrainConfig(max_steps=8, batch_size=8, eval_steps=2),
              space.model_copy(update={"trials": 3}), Path(tiny_data["model"]), read_jsonl(tiny_data["train"]),
              read_jsonl(tiny_data["val"]), tmp_path / "study", max_length=256)
    assert s2["trials"] == 3


@pytest.mark.parametrize("preset,method", [("configs/training/dpo.yaml", "dpo")])
def test_cli_train_run_dpo(preset, method, tmp_path):
    from llm_platform.cli import app
    run_id = f"{method}-{uuid.uuid4().hex[:6]}"
    r = CliRunner().invoke(app, ["train", "run", "--config", "configs/pipelines/tiny.yaml", "--train-config", preset,
                                 "--set", f"runs_dir={tmp_path}", "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
                                 "--run-id", run_id])
    assert r.exit_code == 0, r.output
    m = read_json(tmp_path / run_id / "02_train" / "metrics.json")["metrics"]
    assert m["method"] == "dpo" and m["steps"] == 16 and m["pairs.rejected_pairs"] == 0
    assert m["val_reward_accuracy_after"] > m["val_reward_accuracy_before"]
    assert json.loads((tmp_path / run_id / "run.json").read_text())["registered_version"] == "1"


@pytest.mark.parametrize("method", ["qlora", "full"])
def test_pipeline_end_to_end_per_method(method, tmp_path):
    "Data -> train -> evaluate -> merge with QLoRA and full fine-tuning: held-out loss falls, a servable folder results."
    from llm_platform.pipeline import run_pipeline
    lr = {"qlora": 3e-3, "full": 1e-3}[method]
    info = run_pipeline("configs/pipelines/tiny.yaml", [f"runs_dir={tmp_path}", "mlflow.enabled=false",
                                                        f"train.method={method}", f"train.learning_rate={lr}",
                                                        "steps=[01_data,02_train,03_evaluate,04_merge]"],
                        run_id=f"{method}-{uuid.uuid4().hex[:6]}", progress=False)
    ev = read_json(tmp_path / info["run_id"] / "03_evaluate" / "metrics.json")["metrics"]
    assert ev["tuned"]["loss"] < ev["base"]["loss"]
    assert (Path(info["model_dir"]) / "model.safetensors").exists()
