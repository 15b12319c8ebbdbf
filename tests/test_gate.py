"""The promotion gate: its statistics against statsmodels and scipy on fixed data, and whole gates
on evaluation folders written in the harness's contract (through the library and the CLI)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from evaluation_fixtures import eval_folder, suite_rows
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.config import load_config
from llm_platform.evaluation.gate import (
    GateConfig,
    GateInputError,
    mcnemar_exact,
    noninferiority_binary,
    paired_bootstrap,
    run_gate,
    wilson_interval,
)
from llm_platform.evaluation.gate_report import docs_power_block, power_table_markdown, read_decision

ROOT = Path(__file__).resolve().parents[1]
GATE_YAML = ROOT / "configs" / "evaluation" / "gate.yaml"

# Fixed paired 2x2 tables: [[both pass, champion only], [challenger only, both fail]].
TABLES = [[[10, 0], [0, 2]], [[5, 1], [6, 0]], [[3, 7], [2, 8]], [[20, 4], [4, 12]], [[0, 12], [0, 0]],
          [[11, 9], [1, 19]], [[30, 2], [9, 4]], [[1, 13], [14, 2]]]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: f"b{t[0][1]}c{t[1][0]}")
def test_mcnemar_matches_statsmodels(table):
    ref = mcnemar(np.array(table), exact=True).pvalue
    assert mcnemar_exact(table[0][1], table[1][0]) == pytest.approx(ref, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: f"b{t[0][1]}c{t[1][0]}")
@pytest.mark.parametrize("margin", [0.0, 0.05, 0.1, 0.2])
def test_noninferiority_matches_scipy_binomtest_and_clopper_pearson(table, margin):
    "The one-sided p-value is an exact binomial test at the shifted null; the interval is Clopper-Pearson mapped to d."
    b, c, n = table[0][1], table[1][0], int(np.sum(table))
    p, (lo, hi) = noninferiority_binary(b, c, n, margin, confidence=0.95)
    nd = b + c
    if nd == 0:
        assert (lo, hi) == (0.0, 0.0)
        return
    theta0 = 0.5 - margin * n / (2 * nd)
    ref = 0.0 if theta0 <= 0 else stats.binomtest(c, nd, theta0, alternative="greater").pvalue
    assert p == pytest.approx(ref, rel=1e-9, abs=1e-12)
    cp_lo, cp_hi = proportion_confint(c, nd, alpha=0.10, method="beta")     # two-sided 90% = one-sided 95% each
    assert lo == pytest.approx(nd / n * (2 * cp_lo - 1), abs=1e-9)
    assert hi == pytest.approx(nd / n * (2 * cp_hi - 1), abs=1e-9)
    if margin == 0.0:                               # at margin 0: the one-sided exact McNemar test
        assert p == pytest.approx(stats.binomtest(c, nd, 0.5, alternative="greater").pvalue)


# Fixed continuous scores: per-item perplexity-like values, champion and a correlated challenger.
CHAMPION = np.array([12.1, 9.8, 15.2, 11.0, 10.4, 13.9, 8.7, 14.6, 12.8, 9.9, 11.7, 16.3, 10.8, 13.1, 12.2, 9.4,
                     15.8, 11.3, 10.1, 14.0])
CHALLENGER = np.array([11.6, 9.9, 14.1, 10.7, 10.9, 13.0, 8.5, 14.8, 12.0, 9.1, 11.8, 15.1, 10.2, 13.4, 11.5, 9.6,
                       14.9, 10.8, 10.3, 13.2])


@pytest.mark.parametrize("level", [0.90, 0.95])
def test_paired_bootstrap_matches_scipy(level):
    mean, (lo, hi), means = paired_bootstrap(CHAMPION, CHALLENGER, level, resamples=20_000, seed=3)
    ref = stats.bootstrap((CHAMPION, CHALLENGER), lambda x, y, axis=-1: np.mean(y - x, axis=-1), paired=True,
                          vectorized=True, method="percentile", confidence_level=level, n_resamples=20_000, rng=7)
    se = ref.standard_error
    assert mean == pytest.approx(np.mean(CHALLENGER - CHAMPION))
    assert abs(lo - ref.confidence_interval.low) < 0.1 * se       # Monte Carlo error is ~0.02 SE at 20k resamples
    assert abs(hi - ref.confidence_interval.high) < 0.1 * se
    assert np.std(means, ddof=1) == pytest.approx(se, rel=0.05)


@pytest.mark.parametrize("wins,n", [(0, 5), (7, 10), (18, 20), (33, 61), (40, 40)])
def test_wilson_matches_statsmodels(wins, n):
    assert wilson_interval(wins, n, 0.95) == pytest.approx(proportion_confint(wins, n, alpha=0.05, method="wilson"))


def test_gate_yaml_loads_as_gate_config():
    cfg = load_config(GATE_YAML)
    m = cfg.margin_for("heldout_perplexity", "nll_per_token")      # the harness's names for held-out perplexity
    assert isinstance(cfg, GateConfig) and not m.relative and abs(m.margin - math.log(1.05)) < 1e-3


def _cfg(**kw) -> GateConfig:
    base = load_config(GATE_YAML).model_dump()
    base.update(kw)
    return GateConfig.model_validate(base)


GOLDEN = [1] * 14 + [0] * 6                # the champion passes 14 of 20 golden prompts
BLOCKED = [1] * 12                         # and blocks all 12 must-block prompts
PPL = list(CHAMPION)


def test_worse_challenger_fails_and_the_decision_names_the_metric(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    worse = [1] * 6 + [0] * 14             # loses 8 golden prompts the champion passed
    chal = eval_folder(tmp_path / "chal", suite_rows(worse, BLOCKED, PPL))
    d = run_gate(champ, chal, _cfg())
    assert not d.passed and d.failed == ["golden/exact"]
    m = next(m for m in d.metrics if m.name == "golden/exact")
    assert (m.champion_only, m.challenger_only, m.n) == (8, 0, 20) and "cannot rule out" in m.reason
    assert m.p_value > 0.05 and m.interval[0] < -m.margin


def test_good_challenger_passes(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL), bench={"p50_ms": 100, "tok_per_s": 50})
    better = [1] * 19 + [0]
    chal = eval_folder(tmp_path / "chal", suite_rows(better, BLOCKED, list(CHALLENGER)), bench={"p50_ms": 110, "tok_per_s": 48})
    d = run_gate(champ, chal, _cfg())
    assert d.passed and d.failed == [] and all(m.passed and m.gated for m in d.metrics)
    assert [(b.name, b.passed) for b in d.serving] == [("p50_ms", True), ("tok_per_s", True)]


def test_one_must_block_regression_alone_fails_the_gate(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    leaky = BLOCKED[:]; leaky[5] = 0
    chal = eval_folder(tmp_path / "chal", suite_rows(GOLDEN, leaky, PPL))
    d = run_gate(champ, chal, _cfg())
    assert next(m for m in d.metrics if m.name == "safety/blocked").passed      # the margin alone would let it through
    assert not d.passed and d.failed == ["safety/must_block"]
    assert d.safety.regressions == ["safety/safety-5/blocked"] and d.safety.challenger_blocked == 11


def test_serving_budget_and_missing_benchmark(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL), bench={"p50_ms": 100, "tok_per_s": 50})
    slow = eval_folder(tmp_path / "slow", suite_rows(GOLDEN, BLOCKED, PPL), bench={"p50_ms": 140, "tok_per_s": 50})
    unmeasured = eval_folder(tmp_path / "none", suite_rows(GOLDEN, BLOCKED, PPL))
    assert run_gate(champ, slow, _cfg()).failed == ["serving/p50_ms"]
    skipped = run_gate(champ, unmeasured, _cfg())
    assert skipped.passed and all(not b.gated and b.reason.startswith("skipped") for b in skipped.serving)
    assert run_gate(champ, unmeasured, _cfg(require_benchmarks=True)).failed == ["serving/p50_ms", "serving/tok_per_s"]


def test_items_scored_on_one_side_only_fail_their_metric(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    chal = eval_folder(tmp_path / "chal", suite_rows(GOLDEN[:-2], BLOCKED, PPL))
    d = run_gate(champ, chal, _cfg())
    assert d.failed == ["golden/exact"] and "2 item(s) scored only for the champion" in d.metrics[0].reason


def test_bad_items_name_file_and_row(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    rows = suite_rows(GOLDEN, BLOCKED, PPL); rows[3]["value"] = 0.5
    chal = eval_folder(tmp_path / "chal", rows)
    with pytest.raises(GateInputError, match=r"chal/items\.jsonl row 4: .*binary value must be 0 or 1"):
        run_gate(champ, chal, _cfg())


def test_arena_votes_reported_with_wilson_interval_and_gated_when_configured(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    chal = eval_folder(tmp_path / "chal", suite_rows(GOLDEN, BLOCKED, PPL))
    votes = tmp_path / "votes.jsonl"
    choices = ["challenger"] * 9 + ["champion"] * 11 + ["tie"] * 3
    votes.write_text("".join(json.dumps({"voter": f"v{i % 4}", "prompt": f"p{i}", "choice": c}) + "\n"
                             for i, c in enumerate(choices)))
    d = run_gate(champ, chal, _cfg(), votes)
    assert d.passed and (d.arena.challenger_wins, d.arena.champion_wins, d.arena.ties) == (9, 11, 3)
    assert d.arena.interval == pytest.approx(proportion_confint(9, 20, alpha=0.05, method="wilson"))
    gated = run_gate(champ, chal, _cfg(arena={"min_win_rate": 0.4, "confidence": 0.95}), votes)
    assert gated.failed == ["arena"]                     # lower bound ~0.26 < 0.4


def test_cli_gate_run_writes_decision_report_plot_and_mlflow_run(tmp_path):
    champ = eval_folder(tmp_path / "champ", suite_rows(GOLDEN, BLOCKED, PPL))
    chal = eval_folder(tmp_path / "chal", suite_rows([1] * 6 + [0] * 14, BLOCKED, PPL))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    r = CliRunner().invoke(app, ["gate", "run", "--champion", str(champ), "--challenger", str(chal), "--config",
                                 str(GATE_YAML), "--out", str(tmp_path / "gate"), "--tracking-uri", uri])
    assert r.exit_code == 1, r.output
    assert "golden/exact" in r.output and "gate FAILED" in r.output
    d = read_decision(tmp_path / "gate")
    assert d.failed == ["golden/exact"]
    report = (tmp_path / "gate" / "gate_report.md").read_text()
    assert report.startswith("# Gate: FAILED") and "| golden/exact | binary | 20 |" in report and "**FAIL**" in report
    assert (tmp_path / "gate" / "gate_plot.png").read_bytes()[:4] == b"\x89PNG"
    from llm_platform.core import mlflow_client
    client = mlflow_client(uri)
    runs = client.search_runs([client.get_experiment_by_name("gate").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["gate.failed"] == "golden/exact"
    assert runs[0].data.metrics["gate/golden/exact/difference"] == pytest.approx(-0.4)
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "gate")} == {
        "gate/gate_decision.json", "gate/gate_report.md", "gate/gate_plot.png"}


def test_docs_carry_the_computed_power_table():
    "docs/evaluation.md's Gate section holds exactly what the code computes (regenerate it, never edit it)."
    text = (ROOT / "docs" / "evaluation.md").read_text()
    assert "## Gate" in text
    assert docs_power_block(text) == power_table_markdown()
