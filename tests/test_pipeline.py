"""The papermill pipeline end to end on the tiny model: outputs, golden loss check, MLflow, resume."""
import json
import uuid
from pathlib import Path

import nbformat
import pytest

from llm_platform.core import read_json
from llm_platform.pipeline import PipelineStepError, run_pipeline

STEPS = ["01_data", "02_train", "03_evaluate", "04_merge", "05_export", "06_gate"]
# Runs that test the gate, the cache or resuming leave out 05_export (tiny_run exports; ~30 s a run saved)
TO_MERGE = ["01_data", "02_train", "03_evaluate", "04_merge"]
NO_EXPORT = f"steps=[{','.join([*TO_MERGE, '06_gate'])}]"


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



def test_each_step_describes_itself(tiny_run):
    "Headline, artifacts by role, tags and files to log come from the step's own manifest, not from its name."
    from llm_platform.pipeline import step_artifact
    run_dir = tiny_run["run_dir"]
    manifests = {s: read_json(run_dir / s / "metrics.json") for s in STEPS}
    for step, m in manifests.items():
        assert isinstance(m["headline"], str) and m["headline"], step
        assert all(Path(p).exists() for p in m["artifacts"].values()), (step, m["artifacts"])
    data = manifests["01_data"]
    assert data["headline"] == (" / ".join(f"{k} {v}" for k, v in data["metrics"]["splits"].items())
                                + f" / rejected {data['metrics']['rejected']}")
    assert "tok/s (trl, 1 process(es))" in manifests["02_train"]["headline"]
    assert manifests["02_train"]["artifacts"]["trained"] == manifests["02_train"]["metrics"]["adapter_dir"]
    assert manifests["02_train"]["tags"]["train.backend"] == "trl"
    assert manifests["02_train"]["log_files"] == [str(run_dir / "02_train" / "loss_curve.png")]
    assert step_artifact(run_dir, STEPS, "model_dir") == tiny_run["model_dir"] == str(run_dir / "04_merge" / "model")
    assert step_artifact(run_dir, STEPS, "no such role") is None

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


@pytest.fixture(scope="module")
def bad_chats(tmp_path_factory) -> Path:
    "The sample chats with every assistant answer replaced by random letters: training on it makes a worse model."
    import random
    rng = random.Random(0)
    rows = [json.loads(line) for line in Path("data/sample/chats.jsonl").read_text().splitlines()]
    for r in rows:
        for m in r["messages"]:
            if m["role"] == "assistant":
                m["content"] = " ".join("".join(rng.choice("qxzjkvwy") for _ in range(rng.randint(3, 9))) for _ in range(24))
    out = tmp_path_factory.mktemp("bad") / "chats.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_a_challenger_trained_on_bad_data_fails_the_gate_and_the_champion_stays(tiny_run, bad_chats):
    "End to end: the pipeline trains on garbage; 06_gate compares it with the champion (tiny_run's version) and says no."
    from llm_platform.registry.models import list_versions
    ov = [*_overrides(tiny_run), f"data.path={bad_chats}", "evaluate.require_improvement=false", "gate.limit=8",
          "train.max_steps=10", NO_EXPORT]       # half the champion's steps on garbage is worse enough
    info = run_pipeline("configs/pipelines/tiny.yaml", ov, run_id=f"bad-{uuid.uuid4().hex[:6]}", progress=False)
    gate, name = info["gate"], tiny_run["registered_model"]
    assert gate["champion_before"] == tiny_run["registered_version"] and gate["passed"] is False
    assert "heldout_perplexity/nll_per_token" in gate["failed"] and not gate["promoted"]
    report = (tiny_run["runs_dir"] / info["run_id"] / "06_gate" / "gate_report.md").read_text()
    assert "heldout_perplexity/nll_per_token" in report and "FAIL" in report.upper()
    versions = {v.version: v.aliases for v in list_versions(name, f"sqlite:///{tiny_run['runs_dir']}/mlflow.db")}
    assert "champion" in versions[tiny_run["registered_version"]] and "challenger" in versions[info["registered_version"]]



def test_a_challenger_as_good_as_the_champion_passes_is_promoted_and_rolls_back(tiny_run):
    """End to end, after the bad-data case: the champion's recipe trained again (no step reused) is a new version
    that passes 06_gate's non-inferiority tests against the champion (tiny_run's version) and becomes champion;
    `registry rollback` puts tiny_run's version back. (Training the tiny random model longer makes it worse:
    40 steps failed the gate on held-out loss and instruction following, as it should.)"""
    from typer.testing import CliRunner

    from llm_platform.cli import app
    from llm_platform.registry.models import list_versions
    uri = f"sqlite:///{tiny_run['runs_dir']}/mlflow.db"
    ov = [*_overrides(tiny_run), "gate.limit=8", NO_EXPORT]
    index = tiny_run["runs_dir"] / ".step_cache.json"
    saved = index.read_bytes()          # the retrain indexes its steps: later tests reuse tiny_run's, as before
    try:
        info = run_pipeline("configs/pipelines/tiny.yaml", ov, run_id=f"good-{uuid.uuid4().hex[:6]}", progress=False,
                            use_cache=False)
    finally:
        index.write_bytes(saved)
    assert info["registered_version"] not in (tiny_run["registered_version"], None)
    gate, name, old = info["gate"], tiny_run["registered_model"], tiny_run["registered_version"]
    assert gate["champion_before"] == old and gate["passed"] is True and gate["promoted"], gate
    champion = lambda: [v.version for v in list_versions(name, uri) if "champion" in v.aliases]
    assert champion() == [info["registered_version"]]
    r = CliRunner().invoke(app, ["registry", "rollback", name, "--tracking-uri", uri, "--reason", "test: roll back",
                                 "--audit", str(tiny_run["runs_dir"] / "registry" / "audit.jsonl")])
    assert r.exit_code == 0, r.output
    assert champion() == [old] and f"champion -> version {old}" in " ".join(r.output.split())

def test_failed_step_can_be_resumed(runs_dir, tmp_path):
    "A step that fails stops the run with a resume command; after the cause is fixed, resume finishes it."
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"prompt": "Is there dark mode?", "expected": "Dark"}\n{"prompt": broken\n')
    run_id = f"resume-{uuid.uuid4().hex[:6]}"
    overrides = [f"runs_dir={runs_dir}", "mlflow.enabled=false", "train.max_steps=2", f"evaluate.golden_path={golden}",
                 "evaluate.require_improvement=false", f"steps=[{','.join(TO_MERGE)}]"]
    with pytest.raises(PipelineStepError, match=f"resume with: llm-platform pipeline run --resume {run_id}") as e:
        run_pipeline("configs/pipelines/tiny.yaml", overrides, run_id=run_id, progress=False)
    assert "03_evaluate" in str(e.value) and "golden.jsonl:2" in str(e.value)
    info = json.loads((runs_dir / run_id / "run.json").read_text())
    assert info["steps_done"] == ["01_data", "02_train"] and info["failed_step"] == "03_evaluate"
    trained_at = (runs_dir / run_id / "02_train" / "metrics.json").stat().st_mtime

    golden.write_text('{"prompt": "Is there dark mode?", "expected": "Dark"}\n')
    info = run_pipeline("configs/pipelines/tiny.yaml", [f"runs_dir={runs_dir}"], run_id=run_id, resume=True,
                        progress=False)
    assert info["steps_done"] == TO_MERGE and "failed_step" not in info
    assert (runs_dir / run_id / "02_train" / "metrics.json").stat().st_mtime == trained_at   # not retrained


def test_existing_run_id_is_not_overwritten(tiny_run):
    with pytest.raises(FileExistsError, match="--resume"):
        run_pipeline("configs/pipelines/tiny.yaml", [f"runs_dir={tiny_run['runs_dir']}"], run_id=tiny_run["run_id"])


# The step cache. The unchanged re-run reuses the session's tiny run; the other three share one
# changed-training run (train, evaluate and merge run once more, about a minute on two cores).

def _overrides(tiny_run, *more):
    return [f"runs_dir={tiny_run['runs_dir']}", f"mlflow.tracking_uri=sqlite:///{tiny_run['runs_dir']}/mlflow.db", *more]


def _made_here(run_dir: Path, step: str) -> bool:
    "The step ran in this run: a real folder whose manifest names this run."
    return not (run_dir / step).is_symlink() and read_json(run_dir / step / "metrics.json")["run_id"] == run_dir.name


def test_unchanged_pipeline_reuses_every_step_in_under_10s(tiny_run):
    import time

    from mlflow.tracking import MlflowClient
    t = time.perf_counter()
    info = run_pipeline("configs/pipelines/tiny.yaml", _overrides(tiny_run), run_id=f"again-{uuid.uuid4().hex[:6]}",
                        progress=False)
    seconds = time.perf_counter() - t
    assert seconds < 10, seconds
    run_dir = tiny_run["runs_dir"] / info["run_id"]
    assert info["steps_done"] == STEPS
    assert info["reused_from"] == {s: {"run_id": tiny_run["run_id"], "step": s} for s in STEPS}
    for step in STEPS:
        assert (run_dir / step).resolve() == (tiny_run["run_dir"] / step).resolve() and (run_dir / step).is_symlink()
    assert read_json(run_dir / "run.json")["reused_from"] == info["reused_from"]
    assert info["model_dir"] == tiny_run["model_dir"]
    # no second model version for the same training; MLflow says where each step came from
    assert (info["registered_model"], info["registered_version"]) == (tiny_run["registered_model"],
                                                                        tiny_run["registered_version"])
    run = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['runs_dir']}/mlflow.db").get_run(info["mlflow_run_id"])
    assert run.data.tags["reused.02_train"] == f"{tiny_run['run_id']}/02_train"


@pytest.fixture(scope="module")
def changed_run(tiny_run):
    "The tiny pipeline with one training knob changed (3 steps; the resume test trains 2), MLflow off."
    ov = _overrides(tiny_run, "mlflow.enabled=false", "train.max_steps=3", "evaluate.require_improvement=false",
                    f"steps=[{','.join(TO_MERGE)}]")
    info = run_pipeline("configs/pipelines/tiny.yaml", ov, run_id=f"changed-{uuid.uuid4().hex[:6]}", progress=False)
    return {**info, "overrides": ov, "run_dir": tiny_run["runs_dir"] / info["run_id"]}


def test_changed_training_override_reruns_train_and_after(tiny_run, changed_run):
    assert changed_run["reused_from"] == {"01_data": {"run_id": tiny_run["run_id"], "step": "01_data"}}
    for step in ("02_train", "03_evaluate", "04_merge"):
        assert _made_here(changed_run["run_dir"], step), step
    assert read_json(changed_run["run_dir"] / "02_train" / "metrics.json")["metrics"]["steps"] == 3


def test_force_reruns_the_step_and_the_steps_after_it(tiny_run, changed_run):
    info = run_pipeline("configs/pipelines/tiny.yaml", changed_run["overrides"], run_id=f"forced-{uuid.uuid4().hex[:6]}",
                        progress=False, force=["03_evaluate"])
    run_dir = tiny_run["runs_dir"] / info["run_id"]
    assert info["reused_from"] == {"01_data": {"run_id": tiny_run["run_id"], "step": "01_data"},
                                   "02_train": {"run_id": changed_run["run_id"], "step": "02_train"}}
    assert _made_here(run_dir, "03_evaluate") and _made_here(run_dir, "04_merge")   # 04: its input changed


def test_deleted_cached_output_is_a_miss_not_a_crash(tiny_run, changed_run):
    import shutil
    runs = tiny_run["runs_dir"]
    index, keys = read_json(runs / ".step_cache.json"), read_json(changed_run["run_dir"] / "run.json")["step_keys"]
    evaluated_by = index[keys["03_evaluate"]]["run_id"]  # the changed run, or the forced run that re-made it
    merge_key = read_json(runs / evaluated_by / "run.json")["step_keys"]["04_merge"]
    shutil.rmtree(runs / index[merge_key]["run_id"] / "04_merge")   # what the next run would reuse
    info = run_pipeline("configs/pipelines/tiny.yaml", changed_run["overrides"], run_id=f"deleted-{uuid.uuid4().hex[:6]}",
                        progress=False)
    run_dir = tiny_run["runs_dir"] / info["run_id"]
    assert set(info["reused_from"]) == {"01_data", "02_train", "03_evaluate"}
    assert _made_here(run_dir, "04_merge") and info["steps_done"] == TO_MERGE
    assert info["step_keys"]["04_merge"] == merge_key
    assert read_json(runs / ".step_cache.json")[merge_key]["run_id"] == info["run_id"]


def test_no_cache_and_bad_force_from_the_cli(tiny_run):
    from typer.testing import CliRunner

    from llm_platform.cli import app
    r = CliRunner().invoke(app, ["pipeline", "run", "--config", "configs/pipelines/tiny.yaml", "--force", "02_trian",
                                 "--set", f"runs_dir={tiny_run['runs_dir']}"])
    assert r.exit_code != 0 and "02_trian" in r.output



def test_pipeline_show_prints_each_steps_own_headline(tiny_run):
    from typer.testing import CliRunner

    from llm_platform.cli import app
    r = CliRunner().invoke(app, ["pipeline", "show", tiny_run["run_id"], "--runs-dir", str(tiny_run["runs_dir"])],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    for step in STEPS:
        line = next(ln for ln in r.output.splitlines() if step in ln)
        assert "ok" in line and read_json(tiny_run["run_dir"] / step / "metrics.json")["headline"] in line, line
    missing = CliRunner().invoke(app, ["pipeline", "show", "no-such-run", "--runs-dir", str(tiny_run["runs_dir"])])
    assert missing.exit_code == 1 and "no such run" in missing.output

def test_step_config_covers_what_each_step_notebook_reads():
    "STEP_CONFIG must name every config section a step notebook touches, else the cache could hit wrongly."
    import re

    from llm_platform.config import STEPS as SHIPPED
    from llm_platform.config import PipelineConfig
    from llm_platform.step_cache import IGNORED_KEYS, STEP_CONFIG
    assert set(STEP_CONFIG) <= set(SHIPPED)      # steps not declared are keyed on the whole config
    for step in STEP_CONFIG:
        nb = nbformat.read(Path("pipelines") / f"{step}.ipynb", as_version=4)
        src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        aliases = ["ctx.cfg", *re.findall(r"^(\w+) = ctx\.cfg$", src, re.M)]
        used = {m for a in aliases for m in re.findall(rf"\b{re.escape(a)}\.(\w+)", src)}
        used &= set(PipelineConfig.model_fields) - set(IGNORED_KEYS)   # where results go, never what they are
        declared = {p for p in STEP_CONFIG[step] if "." not in p}
        assert used and used <= declared, (step, used - declared)


def test_key_depends_on_declared_sections_only():
    from llm_platform.config import dump_config, load_config
    from llm_platform.step_cache import code_fingerprint, step_key
    code = code_fingerprint(Path("llm_platform"))
    def keys(*ov):
        cfg = dump_config(load_config("configs/pipelines/tiny.yaml", list(ov)))
        return {s: step_key(s, Path("pipelines") / f"{s}.ipynb", cfg, code, {}).key for s in STEPS}
    base, lr, golden = keys(), keys("train.learning_rate=0.5"), keys("evaluate.max_new_tokens=3")
    assert base["01_data"] == lr["01_data"] and base["02_train"] != lr["02_train"]
    assert base["02_train"] == golden["02_train"] and base["03_evaluate"] != golden["03_evaluate"]
    assert keys("runs_dir=/elsewhere", "mlflow.enabled=false") == base
