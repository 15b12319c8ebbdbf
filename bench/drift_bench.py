"""Drift detection on the built-in samples: false-alarm rate (unshifted) and detection power (shifted), side by side.

One repetition shuffles the shipped training data (data/sample/chats.jsonl, 216 user turns), takes
--n-reference turns as the reference and --n-live held-out turns as the live window, shifts the window
as the scenario says (llm_platform.monitor.drift.draw_windows) and runs detect_drift with --permutations
permutations. "unshifted" is the `none` scenario: every detection is a false alarm. The defined shift is
`off_domain` at --shift (25%): that fraction of the window are general-assistant prompts in 11 languages
(data/sample/languages.jsonl) answered with a domain refusal. Also printed: the single-feature scenarios
(long_prompts, refusals, unsafe), the power of off_domain by shift fraction, and the false alarms the
same tests would raise without the family-wise (Holm) correction.

    PYTHONPATH=. .venv/bin/python bench/drift_bench.py                  # 500 repetitions, ~3 min on 2 cores
    PYTHONPATH=. .venv/bin/python bench/drift_bench.py --repetitions 100 --json out.json
    PYTHONPATH=. .venv/bin/python bench/drift_bench.py --repetitions 100 --no-single \
        --embedder llm_platform.monitor.drift:smollm2_embeddings     # the model-based topic encoder
"""
import argparse
import json
import math
import platform
import subprocess
import sys
import time

import numpy as np

from llm_platform.monitor.drift import FEATURES, DriftSpec, builtin_pool, detect_drift, draw_windows


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or "unknown"
    import os
    return f"{name}, {os.cpu_count()} CPUs"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    "95% Wilson score interval of a binomial proportion."
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def run(scenario: str, reps: int, spec: DriftSpec, n_ref: int, n_live: int, shift: float, seed: int) -> dict:
    pool, rng = builtin_pool(), np.random.default_rng(seed)
    holm = raw = 0
    per = dict.fromkeys(spec.features, 0)
    t0 = time.perf_counter()
    for i in range(reps):
        ref, live = draw_windows(pool, scenario, rng, n_ref, n_live, shift)
        rep = detect_drift(ref, live, spec.model_copy(update={"seed": seed * 100003 + i}))
        holm += rep.detected
        raw += any(r.p_value <= spec.alpha for r in rep.tested)
        for r in rep.results:
            per[r.feature] += r.detected
    return {"scenario": scenario, "shift": shift, "repetitions": reps, "detected": holm, "rate": holm / reps,
            "ci95": wilson(holm, reps), "rate_uncorrected": raw / reps,
            "per_feature": {f: c / reps for f, c in per.items()}, "ms_per_check": 1000 * (time.perf_counter() - t0) / reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repetitions", type=int, default=500)
    ap.add_argument("--n-reference", type=int, default=136)
    ap.add_argument("--n-live", type=int, default=80)
    ap.add_argument("--shift", type=float, default=0.25)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--sweep", default="0.05,0.1,0.15,0.2", help="off_domain shift fractions for the power curve")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedder", default="hashed-tf",
                    help='input_topic encoder: hashed-tf, or e.g. "llm_platform.monitor.drift:smollm2_embeddings"')
    ap.add_argument("--no-single", action="store_true", help="skip the single-feature scenarios")
    ap.add_argument("--json", help="write all figures here")
    a = ap.parse_args()
    spec = DriftSpec(alpha=a.alpha, n_permutations=a.permutations, min_samples=min(50, a.n_live), embedder=a.embedder)
    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"cpu: {cpu_model()}")
    print(f"sizes: reference {a.n_reference} turns, live window {a.n_live} samples; {a.repetitions} repetitions; "
          f"{a.permutations} permutations; alpha {a.alpha} family-wise (Holm over {len(spec.features)} features); "
          f"topic embedder {a.embedder}")
    builtin_pool()                                      # load + guardrail verdicts once, outside the timings
    res = {"none": run("none", a.repetitions, spec, a.n_reference, a.n_live, a.shift, a.seed),
           "off_domain": run("off_domain", a.repetitions, spec, a.n_reference, a.n_live, a.shift, a.seed + 1)}
    n, s = res["none"], res["off_domain"]
    print()
    print(f"{'':28}{'unshifted (none)':>20}{f'shifted (off_domain {a.shift:.0%})':>32}")
    print(f"{'drift detected (Holm)':28}{n['rate']:>20.1%}{s['rate']:>32.1%}")
    ci = lambda r: f"{100 * r['ci95'][0]:.1f}%-{100 * r['ci95'][1]:.1f}%"  # noqa: E731
    print(f"{'  95% interval':28}{ci(n):>20}{ci(s):>32}")
    print(f"{'  target':28}{'<= 5% false alarms':>20}{'>= 90% detected':>32}")
    print(f"{'any raw p <= alpha':28}{n['rate_uncorrected']:>20.1%}{s['rate_uncorrected']:>32.1%}")
    for f in FEATURES:
        print(f"{'  ' + f:28}{n['per_feature'][f]:>20.1%}{s['per_feature'][f]:>32.1%}")
    print(f"{'ms per check':28}{n['ms_per_check']:>20.1f}{s['ms_per_check']:>32.1f}")
    print()
    single = () if a.no_single else (("long_prompts", "input_length"), ("refusals", "output_refusal"),
                                      ("unsafe", "output_guardrail"))
    if single:
        print("single-feature shifts (detected overall; the feature meant to move):")
    for sc, feat in single:
        r = run(sc, a.repetitions, spec, a.n_reference, a.n_live, a.shift, a.seed + 2)
        res[sc] = r
        label = sc + ("" if sc == "long_prompts" else f" {a.shift:.0%}")
        print(f"  {label:24} overall {r['rate']:6.1%}   {feat} {r['per_feature'][feat]:6.1%}   "
              + " ".join(f"{f}={v:.0%}" for f, v in r["per_feature"].items() if f != feat and v >= 0.05))
    print()
    print("off_domain power by shift fraction (and the features that saw it in >= 5% of repetitions):")
    res["sweep"] = []
    for frac in [float(x) for x in a.sweep.split(",") if x]:
        r = run("off_domain", a.repetitions, spec, a.n_reference, a.n_live, frac, a.seed + 3)
        res["sweep"].append(r)
        print(f"  {frac:5.0%}  detected {r['rate']:6.1%}   "
              + " ".join(f"{f}={v:.0%}" for f, v in r["per_feature"].items() if v >= 0.05))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "cpu": cpu_model(), "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
