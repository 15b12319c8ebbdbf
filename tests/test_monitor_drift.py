"""Drift detection (llm_platform.monitor.drift) on the built-in samples and on malformed traffic-sample files.

The rate checks repeat the measurement of bench/drift_bench.py on fewer repetitions: false alarms on
held-out draws of the training data, detection power on the defined shift (25% off-domain prompts
answered with a refusal) and on single-feature shifts, so a test fails if any one test family breaks.
"""
import json

import numpy as np
import pytest

from llm_platform.monitor.drift import (
    FEATURES,
    DriftError,
    DriftReport,
    DriftSample,
    DriftSpec,
    FeatureResult,
    adjust_p,
    builtin_pool,
    detect_drift,
    draw_windows,
    load_samples,
    measure_rates,
    reference_for_version,
    reference_from_training,
)

SPEC = DriftSpec(n_permutations=200, min_samples=50)
MAX_FALSE_ALARMS = 0.12   # target 5%; with a true rate of 5%, 60 repetitions exceed 12% with probability < 1%
MIN_POWER = 0.8           # target 90%; measured 100% on the defined shift


def acceptable(false_alarms: float, power: float) -> bool:
    return false_alarms <= MAX_FALSE_ALARMS and power >= MIN_POWER


def _stub(always: bool):
    def detector(ref, live, spec):
        return DriftReport([FeatureResult("input_topic", "embedding", "mmd", 0.0, 0.0, 0.0, always)], spec.alpha,
                           spec.correction, spec.n_permutations, "ok")
    return detector


def test_false_alarms_and_detection_power():
    none = measure_rates("none", repetitions=60, spec=SPEC, seed=11)
    shifted = measure_rates("off_domain", repetitions=30, spec=SPEC, seed=12)
    assert acceptable(none["rate"], shifted["rate"]), (none, shifted)
    # the defined shift is seen by the input and the output features, not only by one of them
    assert shifted["per_feature"]["input_topic"] >= MIN_POWER and shifted["per_feature"]["input_language"] >= MIN_POWER
    assert shifted["per_feature"]["output_refusal"] >= MIN_POWER
    # the same check rejects a detector that always or never says "drift"
    for always in (True, False):
        fa = measure_rates("none", repetitions=5, spec=SPEC, detector=_stub(always))["rate"]
        pw = measure_rates("off_domain", repetitions=5, spec=SPEC, detector=_stub(always))["rate"]
        assert not acceptable(fa, pw)


@pytest.mark.parametrize("scenario,feature", [("long_prompts", "input_length"), ("refusals", "output_refusal")])
def test_single_feature_shifts(scenario, feature):
    r = measure_rates(scenario, repetitions=20, spec=SPEC, seed=3)
    assert r["per_feature"][feature] >= MIN_POWER, r


def test_guardrail_hits_from_the_real_guardrails():
    pool = builtin_pool()
    assert not any(pool.base.guardrail_hits)            # the shipped training data passes the content guardrails
    assert sum(pool.unsafe.guardrail_hits) >= 5         # weapons / fraud prompts are blocked
    ref, live = draw_windows(pool, "none", np.random.default_rng(0))
    hits = [i for i, h in enumerate(pool.unsafe.guardrail_hits) if h]
    for s, j in zip(range(0, 80, 4), hits * 3):         # every 4th live request blocked: 25% hits
        live.prompts[s], live.responses[s], live.guardrail_hits[s] = pool.unsafe.prompts[j], None, True
    rep = detect_drift(ref, live, SPEC)
    got = {r.feature: r for r in rep.results}
    assert got["output_guardrail"].detected and rep.output_detected
    assert got["output_length"].n_live == 60            # blocked requests have no response


def _sample(ts, **kw):
    rec = {"ts": ts, "request_id": f"r{ts}", "trace_id": None, "model": "demo", "version": "2", "endpoint": "chat",
           "prompt": "How do I export my notes?", "response": "Open Settings, choose Export.", "prompt_tokens": 20,
           "completion_tokens": 8, "finish_reason": "stop", "status": 200, "guardrail": {"pre": "allow", "post": "allow"}}
    return json.dumps({**rec, **kw})


def test_load_samples_rejects_malformed_lines(tmp_path):
    f = tmp_path / "samples.jsonl"
    lines = [_sample(1000.0), "{not json", "[1, 2]", _sample("yesterday"), _sample(1001, prompt=None),
             _sample(1002, response=7), _sample(1003, status="200"), _sample(1004, guardrail="block"),
             "", _sample(1005, version=3, guardrail={"pre": "modify", "post": None}),
             _sample(1006, status=500, response=""), _sample(999.0), _sample(2000.0), _sample(1007, model="other"),
             '{"ts": 1008, "model": "demo", "prompt": "cut']
    f.write_text("\n".join(lines) + "\n")
    s = load_samples(f, since=1000, until=2000, model="demo")
    assert s.prompts == ["How do I export my notes?"] * 3
    assert s.responses == ["Open Settings, choose Export.", "Open Settings, choose Export.", None]
    assert s.guardrail_hits == [False, True, False]
    got = [(r["where"], r["reason"].split(" (")[0].split(":")[0]) for r in s.rejects]
    assert got == [(f"{f}:2", "not JSON"), (f"{f}:3", "expected a JSON object, got a JSON list"), (f"{f}:4", "ts"),
                   (f"{f}:5", "prompt"), (f"{f}:6", "response"), (f"{f}:7", "status"), (f"{f}:8", "guardrail"),
                   (f"{f}:15", "not JSON")]
    assert load_samples(f, since=1000, until=2000, version="3").prompts == ["How do I export my notes?"]
    assert len(load_samples(tmp_path).prompts) == 6     # a folder: every *.jsonl in it, no window
    with pytest.raises(DriftError, match="no such traffic-sample file"):
        load_samples(tmp_path / "missing.jsonl")


def test_reference_from_a_run_folder_and_report(tmp_path):
    run = tmp_path / "runs" / "demo-1" / "01_data"
    run.mkdir(parents=True)
    src = builtin_pool().base
    with open(run / "train.jsonl", "w") as f:
        for p, r in zip(src.prompts, src.responses):
            f.write(json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}) + "\n")
        f.write('{"messages": "oops"}\n')
    ref = reference_from_training(run.parent)
    assert len(ref) == len(src) and ref.guardrail_hits[0] is None
    assert ref.rejects == [{"where": f"{run / 'train.jsonl'}:{len(src) + 1}",
                            "reason": "expected 'messages' (chat record) or 'prompt'"}]
    with pytest.raises(DriftError, match="01_data/train.jsonl"):
        reference_from_training(tmp_path)

    live = DriftSample(["Écris un poème sur la mer, s'il te plaît."] * 30 + src.prompts[:30],
                       ["I'm sorry, but I can only help with questions about Nimbus Notes."] * 30 + src.responses[:30],
                       [False] * 60, "test")
    rep = detect_drift(ref, live, DriftSpec(n_permutations=199, min_samples=50))
    rows = rep.to_metrics()
    assert [r["feature"] for r in rows] == [f for f in FEATURES if f != "output_guardrail"]  # no reference verdicts
    assert all(set(r) == {"feature", "statistic", "p_value", "detected"} for r in rows)
    assert all(r["detected"] == int(r["p_value"] <= 0.05) for r in rows)
    assert rep.input_detected and rep.output_detected
    json.dumps(rep.to_dict())                             # JSON-able as is
    refusal = next(r for r in rep.results if r.feature == "output_refusal")
    assert (refusal.reference_summary, refusal.live_summary) == ("rate 0.000", "rate 0.500")
    md = rep.to_markdown()
    assert "drift detected" in md and "| `output_guardrail` | - |" in md and "holm" in md
    few = detect_drift(ref, live.take(range(10)), DriftSpec(min_samples=50))
    assert few.status == "insufficient" and few.to_metrics() == [] and not few.detected


def test_holm_and_bonferroni_match_statsmodels():
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = list(rng.uniform(0, 0.2, rng.integers(1, 8)))
        for ours, theirs in (("holm", "holm"), ("bonferroni", "bonferroni")):
            np.testing.assert_allclose(adjust_p(p, ours), multipletests(p, alpha=0.05, method=theirs)[1], atol=1e-12)


def test_reference_for_a_registered_version(tmp_path):
    from evaluation_fixtures import make_registry
    uri = make_registry(tmp_path, versions=2)
    run = tmp_path / "runs" / "demo-run-1" / "01_data"
    run.mkdir(parents=True)
    (run / "train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Dark mode?"},
                                                              {"role": "assistant", "content": "Yes."}]}) + "\n")
    path = reference_for_version("demo", 2, uri, tmp_path / "runs")
    assert path == run.parent and reference_from_training(path).prompts == ["Dark mode?"]
    with pytest.raises(DriftError, match="demo-run-0"):             # version 1's run folder is not there
        reference_for_version("demo", 1, uri, tmp_path / "runs")
