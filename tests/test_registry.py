"""The model registry on a real MLflow sqlite registry with real registered versions: promotion on
a gate decision, refusal of failed / foreign / stale decisions, audited overrides, rollback, and the
generated artifacts of a version; through the library and the `llm-platform registry` commands."""
import json
from pathlib import Path

import mlflow
import pytest
from evaluation_fixtures import eval_folder, make_registry, suite_rows
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.core import mlflow_client
from llm_platform.evaluation.gate import GateConfig, run_gate
from llm_platform.evaluation.gate_report import write_gate_outputs
from llm_platform.registry.models import (
    PromotionRefused,
    RegistryError,
    attach_version_artifacts,
    list_versions,
    promote,
    rollback,
    set_challenger,
    show_version,
)
from llm_platform.security.audit import verify_log

ROOT = Path(__file__).resolve().parents[1]
GOLDEN, BLOCKED, PPL = [1] * 14 + [0] * 6, [1] * 10, [10.0 + (i % 4) for i in range(20)]


@pytest.fixture
def reg(tmp_path):
    "A registry with versions 1-3 of 'demo'; version 1 is champion (by an audited first-champion override)."
    uri = make_registry(tmp_path)
    audit = tmp_path / "audit.jsonl"
    promote("demo", 1, override_reason="first champion: nothing to compare with", tracking_uri=uri, audit_path=audit)
    champ = eval_folder(tmp_path / "eval-1", suite_rows(GOLDEN, BLOCKED, PPL), version="demo/1",
                        bench={"p50_ms": 100.0, "tok_per_s": 40.0})
    return {"uri": uri, "audit": audit, "root": tmp_path, "champ": champ}


def _gate(reg, version: int, golden, blocked=BLOCKED, champion_version="demo/1") -> Path:
    chal = eval_folder(reg["root"] / f"eval-{version}-{len(list(reg['root'].glob('eval-*')))}",
                       suite_rows(golden, blocked, PPL), version=f"demo/{version}")
    champ = reg["champ"]
    if champion_version != "demo/1":
        champ = eval_folder(reg["root"] / f"eval-champ-{champion_version.replace('/', '-')}",
                            suite_rows(GOLDEN, BLOCKED, PPL), version=champion_version)
    out = reg["root"] / f"gate-{chal.name}"
    write_gate_outputs(run_gate(champ, chal, GateConfig()), out)
    return out


def _aliases(uri) -> dict[str, list[str]]:
    return {v.version: v.aliases for v in list_versions("demo", uri)}


def test_good_challenger_is_promoted_and_rollback_restores_the_old_champion(reg):
    uri = reg["uri"]
    set_challenger("demo", 2, uri)
    decision = _gate(reg, 2, [1] * 19 + [0])
    m = promote("demo", 2, decision=decision, tracking_uri=uri, audit_path=reg["audit"])
    assert (m.champion, m.previous, m.override) == ("2", "1", False)
    assert _aliases(uri) == {"3": [], "2": ["champion"], "1": ["previous-champion"]}     # challenger alias consumed
    client = mlflow_client(uri)
    assert str(client.get_model_version_by_alias("demo", "champion").version) == "2"
    tags = client.get_model_version("demo", "2").tags
    assert tags["promotion.gate_passed"] == "true" and tags["previous_champion"] == "1"

    back = rollback("demo", uri, reason="bad answers in production", audit_path=reg["audit"])
    assert (back.champion, back.previous) == ("1", "2")
    assert _aliases(uri) == {"3": [], "2": [], "1": ["champion"]}
    assert "rolled_back_at" in client.get_model_version("demo", "2").tags
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback("demo", uri, audit_path=reg["audit"])
    report = verify_log(reg["audit"])
    assert report.ok and report.lines == 3
    events = [json.loads(line)["event"] for line in reg["audit"].read_text().splitlines()]
    assert events == ["registry.promote_override", "registry.promote", "registry.rollback"]


def test_rollback_walks_back_through_several_promotions(reg):
    uri = reg["uri"]
    promote("demo", 2, decision=_gate(reg, 2, [1] * 19 + [0]), tracking_uri=uri, audit_path=reg["audit"])
    promote("demo", 3, decision=_gate(reg, 3, [1] * 20, champion_version="demo/2"), tracking_uri=uri,
            audit_path=reg["audit"])
    assert _aliases(uri) == {"3": ["champion"], "2": ["previous-champion"], "1": []}
    assert rollback("demo", uri, audit_path=reg["audit"]).champion == "2"
    assert _aliases(uri) == {"3": [], "2": ["champion"], "1": ["previous-champion"]}
    assert rollback("demo", uri, audit_path=reg["audit"]).champion == "1"


def test_failed_gate_refuses_promotion_and_names_the_metric(reg):
    decision = _gate(reg, 2, [1] * 6 + [0] * 14)
    with pytest.raises(PromotionRefused, match=r"the gate failed \(golden/exact\)"):
        promote("demo", 2, decision=decision, tracking_uri=reg["uri"], audit_path=reg["audit"])
    assert _aliases(reg["uri"])["1"] == ["champion"] and verify_log(reg["audit"]).lines == 1


def test_safety_regression_alone_blocks_promotion(reg):
    leaky = BLOCKED[:]; leaky[0] = 0
    decision = _gate(reg, 2, GOLDEN, leaky)
    with pytest.raises(PromotionRefused, match="safety/must_block"):
        promote("demo", 2, decision=decision, tracking_uri=reg["uri"], audit_path=reg["audit"])


def test_decision_about_another_version_or_a_moved_champion_is_refused(reg):
    uri = reg["uri"]
    decision = _gate(reg, 2, [1] * 19 + [0])
    with pytest.raises(PromotionRefused, match="about demo/2, not demo/3"):
        promote("demo", 3, decision=decision, tracking_uri=uri, audit_path=reg["audit"])
    stale = _gate(reg, 3, [1] * 20)                                   # compared with demo/1 ...
    promote("demo", 2, decision=decision, tracking_uri=uri, audit_path=reg["audit"])
    with pytest.raises(PromotionRefused, match="champion is now demo/2"):  # ... which is no longer champion
        promote("demo", 3, decision=stale, tracking_uri=uri, audit_path=reg["audit"])


def test_override_needs_a_reason_and_is_audited(reg):
    uri, audit = reg["uri"], reg["audit"]
    failed = _gate(reg, 2, [1] * 6 + [0] * 14)
    for reason in ("", "   "):
        with pytest.raises(PromotionRefused, match="non-empty reason"):
            promote("demo", 2, decision=failed, override_reason=reason, tracking_uri=uri, audit_path=audit)
    with pytest.raises(PromotionRefused, match="needs a gate decision"):
        promote("demo", 2, tracking_uri=uri, audit_path=audit)
    m = promote("demo", 2, decision=failed, override_reason="hotfix for a legal notice; gate rerun tomorrow",
                tracking_uri=uri, actor="alice", audit_path=audit)
    assert m.override and _aliases(uri)["2"] == ["champion"]
    last = json.loads(audit.read_text().splitlines()[-1])
    assert last["event"] == "registry.promote_override" and last["actor"] == "alice"
    assert last["data"]["reason"].startswith("hotfix") and last["data"]["refused_because"] == ["the gate failed (golden/exact)"]
    tags = mlflow_client(uri).get_model_version("demo", "2").tags
    assert tags["promotion.override"] == "true" and tags["promotion.override_reason"].startswith("hotfix")
    assert tags["promotion.audit_seq"] == str(last["seq"])
    r = CliRunner().invoke(app, ["audit", "verify", str(audit)])
    assert r.exit_code == 0 and "ok: 2 records" in r.output


def test_every_version_carries_generated_artifacts(reg):
    uri = reg["uri"]
    uris = attach_version_artifacts("demo", 1, reg["champ"], tracking_uri=uri)
    unmeasured = eval_folder(reg["root"] / "eval-2-only", suite_rows([1] * 19 + [0], BLOCKED, PPL), version="demo/2")
    attach_version_artifacts("demo", 2, unmeasured, tracking_uri=uri)
    shown = show_version("demo", "1", uri)
    assert {"model_version_1/model_card.md", "model_version_1/evaluation_results.json",
            "model_version_1/benchmark_scores.json"} <= set(shown["artifacts"])
    card = Path(mlflow.artifacts.download_artifacts(uris["model_card.md"], tracking_uri=uri)).read_text()
    assert "| train.max_steps | 10 |" in card and "| 03_evaluate.tuned.loss | 3 |" in card      # the run's config and metrics
    assert f"{1:064x}" in card and "0123abc" in card                                          # data hash, git commit
    assert "| golden | 20 | exact | 0.7 |" in card and "| p50_ms | 100.0 |" in card             # evaluation, benchmark
    bench2 = json.loads(Path(mlflow.artifacts.download_artifacts(
        show_version("demo", "2", uri)["tags"]["benchmark_scores"], tracking_uri=uri)).read_text())
    assert bench2["measured"] is False and "does not exist" in bench2["reason"]
    with pytest.raises(RegistryError, match="evaluated demo/1, not demo/3"):
        attach_version_artifacts("demo", 3, reg["champ"], tracking_uri=uri)


def test_cli_gate_promote_list_show_rollback(reg):
    uri, audit, runner = reg["uri"], str(reg["audit"]), CliRunner()
    chal = eval_folder(reg["root"] / "eval-cli", suite_rows([1] * 19 + [0], BLOCKED, PPL), version="demo/2",
                       bench={"p50_ms": 105.0, "tok_per_s": 39.0})
    out = reg["root"] / "gate-cli"
    r = runner.invoke(app, ["gate", "run", "--champion", str(reg["champ"]), "--challenger", str(chal), "--config",
                            str(ROOT / "configs/evaluation/gate.yaml"), "--out", str(out), "--tracking-uri", uri,
                            "--registered-model", "demo", "--version", "2"])
    assert r.exit_code == 0 and "gate PASSED" in r.output, r.output
    assert mlflow_client(uri).get_model_version("demo", "2").tags["gate.passed"] == "true"
    r = runner.invoke(app, ["registry", "promote", "demo", "3", "--decision", str(out), "--tracking-uri", uri, "--audit", audit])
    assert r.exit_code == 1 and "about demo/2, not demo/3" in r.output
    r = runner.invoke(app, ["registry", "promote", "demo", "2", "--override-reason", "", "--tracking-uri", uri, "--audit", audit])
    assert r.exit_code == 1 and "non-empty reason" in r.output
    r = runner.invoke(app, ["registry", "promote", "demo", "2", "--decision", str(out), "--tracking-uri", uri, "--audit", audit])
    assert r.exit_code == 0 and "champion -> version 2 (was 1)" in r.output, r.output
    r = runner.invoke(app, ["registry", "list", "demo", "--tracking-uri", uri])
    assert r.exit_code == 0 and "previous-champion" in r.output and "champion" in r.output
    r = runner.invoke(app, ["registry", "show", "demo", "2", "--tracking-uri", uri])
    assert r.exit_code == 0 and json.loads(r.stdout)["aliases"] == ["champion"]
    r = runner.invoke(app, ["registry", "rollback", "demo", "--reason", "latency spike", "--tracking-uri", uri, "--audit", audit])
    assert r.exit_code == 0 and "champion -> version 1" in r.output
    r = runner.invoke(app, ["registry", "show", "demo", "9", "--tracking-uri", uri])
    assert r.exit_code == 1 and "has no version 9" in r.output
    assert verify_log(audit).ok


def test_the_gateway_resolver_follows_promotion_and_rollback(reg):
    "What the serving side sees: `demo@champion` resolves to the promoted version's model folder, and back after rollback."
    from llm_platform.serve.manager import resolve_target
    runs = reg["root"] / "runs"
    for i in range(3):                                    # run folders the versions' run_id tags name
        model = runs / f"demo-run-{i}" / "04_merge" / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (runs / f"demo-run-{i}" / "run.json").write_text(json.dumps({"run_id": f"demo-run-{i}", "model_dir": str(model)}))
    uri = reg["uri"]
    assert resolve_target("demo@champion", uri, str(runs)).version == "demo/1"
    promote("demo", 2, decision=_gate(reg, 2, [1] * 19 + [0]), tracking_uri=uri, audit_path=reg["audit"])
    t = resolve_target("demo@champion", uri, str(runs))
    assert (t.version, t.run_id, Path(t.model_dir).parent.parent.name) == ("demo/2", "demo-run-1", "demo-run-1")
    rollback("demo", uri, audit_path=reg["audit"])
    assert resolve_target("demo@champion", uri, str(runs)).version == "demo/1"
