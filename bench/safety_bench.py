"""PII analyse+mask: our configured Presidio pipeline vs Presidio's default configuration, side by side.

Both sides get the same ~100-token texts, built by joining cases of tests/data/pii_labelled.jsonl, in one
process, timed in two orders so machine noise hits both alike:
  blocks       each round runs one side over all texts, then the other (which side goes first alternates by
               round): what a process that serves one configuration sees. The p95 target is judged here.
  interleaved  the same text through one side, then the other, text by text: each call finds its caches
               filled by the other side (the default loads en_core_web_lg), which costs ours ~20 %.
Each call is
analyze + anonymize (ours: `PIIEngine.mask` with its configured operators; default: `AnalyzerEngine()`'s
recognizers with the default NLP config, then `AnonymizerEngine().anonymize` with its default replace).
Also prints precision/recall of both on the labelled set (masking, type-agnostic, and per entity), and the
whole-span recall (gold spans masked in full: overlap recall counts a name whose first name leaked).
Latency columns: wall time per call, thread CPU time per call (pooled over rounds), and "best": for each
text the lowest CPU time of the rounds, then the p95 over texts (least disturbed by other jobs).

    PYTHONPATH=. .venv/bin/python bench/safety_bench.py            # ~1 min
    PYTHONPATH=. .venv/bin/python bench/safety_bench.py --rounds 1 --json out.json
"""
import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "pii_labelled.jsonl"
TOKEN = re.compile(r"\w+|[^\w\s]")


def hundred_token_texts(cases: list[dict], target: int = 100) -> list[str]:
    "Consecutive cases joined until each text holds about `target` word/punctuation tokens."
    texts, cur = [], []
    for c in cases:
        cur.append(c["text"])
        if len(TOKEN.findall(" ".join(cur))) >= target:
            texts.append(" ".join(cur)); cur = []
    return texts


def whole_span_recall(cases: list[dict], predict) -> float:
    "Share of gold spans whose every character lies inside a predicted span (overlap recall counts a half-masked name)."
    hit = total = 0
    for c in cases:
        pred = predict(c["text"])
        for start, end, _ in c["spans"]:
            total += 1
            hit += all(any(a <= i < b for a, b, _ in pred) for i in range(start, end) if not c["text"][i].isspace())
    return round(hit / max(total, 1), 4)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def latency(lat: list[float], cpu: list[float], n: int, rounds: int) -> dict:
    "Throughput and percentiles of one side's calls (`rounds` passes over `n` texts, in text order)."
    return {"texts_per_s": round(len(lat) / sum(lat), 1), "p50_ms": round(pct(lat, 0.5) * 1e3, 2),
            "p95_ms": round(pct(lat, 0.95) * 1e3, 2), "cpu_p50_ms": round(pct(cpu, 0.5) * 1e3, 2),
            "cpu_p95_ms": round(pct(cpu, 0.95) * 1e3, 2),
            # per text, the fastest of the rounds: what the code costs when the machine lets it run
            "best_p95_ms": round(pct([min(cpu[r * n + i] for r in range(rounds)) for i in range(n)], 0.95) * 1e3, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="passes over the texts (timings pooled)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from presidio_anonymizer import AnonymizerEngine

    from llm_platform.safety.evaluate import load_cases, presidio_default_analyzer, score_spans, spans_of
    from llm_platform.safety.pii import ENTITIES, PIIEngine

    cases = load_cases(CASES)
    t0 = time.perf_counter(); ours = PIIEngine(); load_ours = time.perf_counter() - t0
    t0 = time.perf_counter(); default = presidio_default_analyzer(); anonymizer = AnonymizerEngine()
    load_default = time.perf_counter() - t0
    sides = {"ours": lambda t: ours.mask(t).text,
             "presidio_default": lambda t: anonymizer.anonymize(t, default.analyze(t, language="en")).text}
    texts = hundred_token_texts(cases)
    for t in texts[:5]:                                    # warm-up
        for f in sides.values():
            f(t)
    def timed(f, t, k, lat, cpu):
        s, c = time.perf_counter(), time.thread_time()
        f(t)
        cpu[k].append(time.thread_time() - c); lat[k].append(time.perf_counter() - s)

    timings = {}
    for order in ("blocks", "interleaved"):
        lat = {k: [] for k in sides}
        cpu = {k: [] for k in sides}      # thread CPU time: what a call costs when the shared machine is busy
        for r in range(args.rounds):
            if order == "blocks":
                for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                    for t in texts:
                        timed(sides[k], t, k, lat, cpu)
            else:
                for t in texts:
                    for k, f in sides.items():
                        timed(f, t, k, lat, cpu)
        timings[order] = (lat, cpu)
    predict = {"ours": lambda t: spans_of(ours.analyze(t)),
               "presidio_default": lambda t: spans_of(default.analyze(t, language="en"))}
    quality = {k: score_spans(cases, f, list(ENTITIES)) for k, f in predict.items()}
    for k, f in predict.items():
        quality[k]["whole_span_recall"] = whole_span_recall(cases, f)
    tokens = [len(TOKEN.findall(t)) for t in texts]
    n = len(texts)
    out = {"texts": len(texts), "tokens_per_text_mean": round(statistics.mean(tokens), 1), "rounds": args.rounds,
           "cases": len(cases), "cpu": platform.processor() or platform.machine(), "loadavg_start": os.getloadavg(),
           "load_s": {"ours": round(load_ours, 2), "presidio_default": round(load_default, 2)}}
    for k in sides:
        out[k] = {order: latency(lat[k], cpu[k], n, args.rounds) for order, (lat, cpu) in timings.items()}
        out[k].update({"masking": quality[k]["masking"], "whole_span_recall": quality[k]["whole_span_recall"],
                  "negatives_flagged": quality[k]["negatives_flagged"],
                  "per_entity": {e: (v["precision"], v["recall"]) for e, v in quality[k]["per_entity"].items()},
                  "other_types_fp": quality[k]["other_types_fp"]})
    print(f"{len(texts)} texts x {args.rounds} rounds, ~{out['tokens_per_text_mean']} tokens each; {len(cases)} labelled cases")
    print(f"load average at start {out['loadavg_start'][0]:.2f}, at end {os.getloadavg()[0]:.2f} (2 vCPUs)")
    print(f"{'':30}{'texts/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'cpu p50':>9}{'cpu p95':>9}{'best p95':>9}")
    for order in timings:
        for k in sides:
            o = out[k][order]
            print(f"{k + ' (' + order + ')':30}{o['texts_per_s']:9.1f}{o['p50_ms']:9.2f}{o['p95_ms']:9.2f}"
                  f"{o['cpu_p50_ms']:9.2f}{o['cpu_p95_ms']:9.2f}{o['best_p95_ms']:9.2f}")
    print(f"{'':30}{'mask P':>9}{'mask R':>9}{'whole R':>9}{'neg flagged':>13}")
    for k in sides:
        o = out[k]
        print(f"{k:30}{o['masking']['precision']:9.3f}{o['masking']['recall']:9.3f}{o['whole_span_recall']:9.3f}"
              f"{o['negatives_flagged']:>8}/{len(cases) - sum(bool(c['spans']) for c in cases)}")
    print("per entity (precision, recall):")
    for e in ENTITIES:
        print(f"  {e:16} ours {out['ours']['per_entity'][e]}  default {out['presidio_default']['per_entity'][e]}")
    print("default's other types (false positives):", out["presidio_default"]["other_types_fp"])
    for order in timings:
        print(f"p95 ratio default/ours ({order}): "
              f"{out['presidio_default'][order]['p95_ms'] / out['ours'][order]['p95_ms']:.2f}x")
    p95 = out["ours"]["blocks"]["p95_ms"]
    recall_ok = all(out["ours"]["per_entity"][e][1] >= out["presidio_default"]["per_entity"][e][1] for e in ENTITIES)
    print(f"target p95 < 10 ms (blocks): {p95:.2f} ms -> {'met' if p95 < 10 else 'NOT met'}; "
          f"recall per entity >= default: {'yes' if recall_ok else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
