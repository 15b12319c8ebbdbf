"""The optimization step end to end on the tiny run: every technique's variant measured on its engine with the
gate's suites, the budget's choice, the report, MLflow runs, the registry's `challenger`, the CLI, and resume."""
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.config import load_config
from llm_platform.core import iter_jsonl, mlflow_client, read_json
from llm_platform.optimize.report import NLL, OptimizeConfig, run_optimize


@pytest.fixture(scope="module")
def optimized(tiny_run):
    "`llm-platform optimize run` on the tiny pipeline: steps 01-06 reused from tiny_run, 07_optimize run."
    runs = tiny_run["runs_dir"]
    ov = [f"runs_dir={runs}", f"mlflow.tracking_uri=sqlite:///{runs}/mlflow.db"]
    r = CliRunner().invoke(app, ["optimize", "run", "--config", "configs/pipelines/tiny.yaml",
                                 "--optimize-config", "configs/optimize/tiny.yaml",
                                 *[a for o in ov for a in ("--set", o)]])
    assert r.exit_code == 0, r.output
    run_id = r.output.strip().splitlines()[-1]
    info = read_json(runs / run_id / "run.json")
    return {"info": info, "out": runs / run_id / "07_optimize", "uri": f"sqlite:///{runs}/mlflow.db", "runs": runs}


def test_every_technique_made_a_variant_measured_on_its_engine(optimized):
    info, report = optimized["info"], read_json(optimized["out"] / "optimization_report.json")
    assert set(info["reused_from"]) == {"01_data", "02_train", "03_evaluate", "04_merge", "05_export", "06_gate"}
    rows = {r["name"]: r for r in report["variants"]}
    assert {r["technique"] for r in rows.values()} == {"baseline", "quantize", "onnx", "prune", "distil", "gguf"}
    assert {r["engine"] for r in rows.values()} == {"transformers", "onnxruntime", "llama.cpp"}
    for r in rows.values():
        assert set(r["speed"]) == {"tok_per_s_c1", "tok_per_s_c4"} and min(r["speed"].values()) > 0, r["name"]
        assert {NLL, "golden/pass", "instruction_following/all_rules", "safety/correct"} <= set(r["scores"]), r["name"]
    for ref in ("fp32", "onnx-fp32", "gguf-f32"):
        assert rows[ref]["speedup"] == {"tok_per_s_c1": 1.0, "tok_per_s_c4": 1.0}
    # The ONNX export scores what the transformers model scores, item for item, through the same suites.
    assert abs(rows["onnx-fp32"]["scores"][NLL] - rows["fp32"]["scores"][NLL]) < 1e-3
    assert rows["onnx-fp32"]["scores"]["golden/pass"] == rows["fp32"]["scores"]["golden/pass"]
    # Structured pruning and distillation really shrink the model; unstructured pruning really zeroes weights.
    assert rows["prune-structured-50"]["size_bytes"] < rows["fp32"]["size_bytes"]
    assert rows["distil-1of2"]["size_bytes"] < rows["fp32"]["size_bytes"]
    assert rows["gguf-q8_0"]["size_bytes"] < rows["gguf-f32"]["size_bytes"] * 0.6


def test_the_budget_picks_the_fastest_variant_inside_it(optimized):
    report = read_json(optimized["out"] / "optimization_report.json")
    budget, rows = report["budget"], report["variants"]
    by = {r["name"]: r for r in rows}
    for r in rows:     # recomputed here from the scores, against the quality reference the report names
        ref = by["gguf-f32" if r["engine"] == "llama.cpp" else "fp32"]
        assert r["quality_reference"] == ref["name"]
        nll_ok = r["scores"][NLL] - ref["scores"][NLL] <= budget["max_nll_increase"] + 1e-12
        drops = [m for m, loss in budget["max_loss"].items() if ref["scores"][m] - r["scores"][m] > loss + 1e-12]
        forgiven = all(any(n.startswith(m) and "within chance" in n for n in r.get("budget_notes", [])) for m in drops)
        assert r["within_budget"] == (nll_ok and forgiven), r
    served = [r for r in rows if r["within_budget"] and (r["engine"] == "llama.cpp" or (
        r["engine"] == "transformers" and not r["load"]))]      # what `llm-platform serve` can run
    assert served and report["chosen"] == max(served, key=lambda r: r["speed"]["tok_per_s_c1"])["name"]
    assert not by["onnx-fp32"]["servable"] and not by["int8-weight-only"]["servable"] and by["gguf-q8_0"]["servable"]
    assert report["pareto_front"] and set(report["pareto_front"]) <= set(by)
    md = (optimized["out"] / "optimization_report.md").read_text()
    assert f"**{report['chosen']}**" in md and all(f"| {r['name']}" in md for r in rows)
    assert (optimized["out"] / "optimization_plot.png").stat().st_size > 10_000


def test_variants_are_mlflow_runs_and_the_choice_is_the_challenger(optimized):
    from llm_platform.registry.models import list_versions
    info, uri = optimized["info"], optimized["uri"]
    report = read_json(optimized["out"] / "optimization_report.json")
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("tiny-optimize")
    runs = client.search_runs([exp.experiment_id], f"tags.run_id = '{info['run_id']}'")
    assert {r.data.tags["variant"] for r in runs} == {v["name"] for v in report["variants"]}
    chosen = next(r for r in runs if r.data.tags["chosen"] == "true")
    assert chosen.data.tags["variant"] == report["chosen"] and "score/" + NLL in chosen.data.metrics
    version = info["optimized_version"]
    mv = client.get_model_version(info["registered_model"], version)
    assert mv.tags["optimize.variant"] == report["chosen"] and mv.tags["optimized_from_version"] == info["registered_version"]
    assert "challenger" in next(v for v in list_versions(info["registered_model"], uri) if v.version == version).aliases
    # The served target of the new version is the variant's own file, not the run's merged model.
    from llm_platform.serve.manager import resolve_target
    target = resolve_target(f"{info['registered_model']}@challenger", uri, str(optimized["runs"]))
    assert target.model_dir == next(v["path"] for v in report["variants"] if v["name"] == report["chosen"])
    r = CliRunner().invoke(app, ["optimize", "report", str(optimized["out"])], env={"COLUMNS": "240"})
    assert r.exit_code == 0 and report["chosen"] in r.output and "gguf-q8_0" in r.output


def test_a_rerun_reuses_each_measured_variant(tiny_run, tmp_path):
    "A step stopped halfway resumes: variants already measured (same record) are not measured again."
    cfg = load_config("configs/optimize/tiny.yaml", kind=OptimizeConfig).model_copy(update={
        "onnx": None, "prune": [], "distil": [], "gguf": []})
    data = Path(read_json(tiny_run["run_dir"] / "01_data" / "metrics.json")["metrics"]["data_dir"])
    rows = {s: [r for _, r in iter_jsonl(data / f"{s}.tokens.jsonl")] for s in ("train", "val")}
    first = run_optimize(cfg, tiny_run["model_dir"], tmp_path, rows["train"], rows["val"])
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("variants/*/measured.json")}
    assert len(stamps) == len(first["variants"]) == 2
    again = run_optimize(cfg, tiny_run["model_dir"], tmp_path, rows["train"], rows["val"])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and again["chosen"] == first["chosen"]
    assert all(math.isclose(a["scores"][NLL], b["scores"][NLL]) for a, b in zip(first["variants"], again["variants"]))


def test_a_bad_optimize_config_names_the_field(tmp_path):
    bad = tmp_path / "opt.yaml"
    bad.write_text("quantize:\n  torchao: [int3]\nbudget:\n  max_nll_increase: -1\n")
    with pytest.raises(Exception) as e:
        load_config(bad, kind=OptimizeConfig)
    assert "torchao" in str(e.value) and "max_nll_increase" in str(e.value)
    r = CliRunner().invoke(app, ["optimize", "run", "--model", str(tmp_path)])
    assert r.exit_code == 1 and "--data" in r.output


def test_another_budget_rejudges_the_measured_variants_without_measuring_again(optimized, tmp_path):
    import shutil
    shutil.copy(optimized["out"] / "optimization_report.json", tmp_path / "optimization_report.json")
    cfg = tmp_path / "budget.yaml"
    cfg.write_text("budget:\n  objective: tok_per_s_c4\n  servable_only: false\n  max_nll_increase: 1.0\n  max_loss: {}\n")
    r = CliRunner().invoke(app, ["optimize", "report", str(tmp_path), "--config", str(cfg)], env={"COLUMNS": "240"})
    assert r.exit_code == 0, r.output
    report = read_json(tmp_path / "optimization_report.json")
    rows = report["variants"]
    assert all(r["within_budget"] for r in rows if r["nll_increase"] is not None and r["nll_increase"] <= 1.0)
    assert report["chosen"] == max((r for r in rows if r["within_budget"]), key=lambda r: r["speed"]["tok_per_s_c4"])["name"]
    assert (tmp_path / "optimization_report.md").exists() and (tmp_path / "optimization_plot.png").exists()
