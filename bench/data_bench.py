"""Data preparation throughput: validate + format + split vs a plain json.loads + apply_chat_template loop.

Both sides read the same synthetic JSONL (distinct conversations of 1-3 turns, SmolLM2 tokenizer);
each runs in its own fresh process so peak memory (ru_maxrss) is measured per side (ours: the parent
process, and the largest of its worker processes). Our side does strictly more: schema and quality
checks, exact and MinHash near-duplicate detection, rejects, assistant-only loss masks, grouped split,
data card; it spreads the stateless work over `data.workers` processes (default: one per CPU).

    .venv/bin/python bench/data_bench.py                 # 200k conversations
    .venv/bin/python bench/data_bench.py --repeat 3      # alternate the sides 3 times; best and median
    .venv/bin/python bench/data_bench.py --n 20000 --sizes 10000,40000   # quick look

On a machine shared with other work, wall-clock rates swing with the load from one run to the next;
`--repeat` alternates baseline and ours so both see the same conditions, and the CPU-seconds column
(user + system, worker processes included) shows the work each side does per record.
"""
import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("note notebook export sync offline share folder tag search pin archive trash restore plan price "
         "storage device phone laptop browser theme dark light shortcut key page list table image file pdf "
         "markdown team colleague access edit view lock password email support refund month year backup").split()


def make_jsonl(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            msgs = []
            for _ in range(rng.choice([1, 1, 2, 3])):
                q = " ".join(rng.choices(WORDS, k=rng.randint(6, 16))) + f" #{i}?"
                a = " ".join(rng.choices(WORDS, k=rng.randint(10, 40))) + "."
                msgs += [{"role": "user", "content": q.capitalize()}, {"role": "assistant", "content": a.capitalize()}]
            f.write(json.dumps({"id": f"c{i}", "messages": msgs}) + "\n")


def run_side(side: str, path: str, out: str) -> dict:
    from transformers import AutoTokenizer

    from llm_platform.models import prepare_smollm2_tokenizer
    tok = AutoTokenizer.from_pretrained(prepare_smollm2_tokenizer())
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if side == "baseline":
        n = 0
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                tok.apply_chat_template(rec["messages"], tokenize=True)
                n += 1
    else:
        from llm_platform.config import DataConfig
        from llm_platform.data.prepare import prepare_dataset
        s = prepare_dataset(DataConfig(path=path, max_length=512), tok, Path(out))
        n = s["read"]
    seconds = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime - cpu0.ru_utime - cpu0.ru_stime + kids.ru_utime + kids.ru_stime
    return {"records": n, "seconds": seconds, "records_per_s": n / seconds, "cpu_seconds": cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def side_in_subprocess(side: str, path: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--side", side, "--path", str(path), "--out", str(out)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--sizes", default="50000,200000", help="file sizes (records) for the memory-flatness check")
    ap.add_argument("--repeat", type=int, default=1, help="run each side this many times, alternating")
    ap.add_argument("--side"); ap.add_argument("--path"); ap.add_argument("--out")
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.path, args.out)))
        return
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        path = d / "chats.jsonl"
        make_jsonl(path, args.n)
        print(f"{args.n} conversations, {path.stat().st_size / 1e6:.0f} MB", flush=True)
        runs = {"baseline": [], "ours": []}
        for i in range(args.repeat):
            for side in runs:
                runs[side].append(side_in_subprocess(side, path, d / f"{side}{i}"))
        best = {side: max(rs, key=lambda r: r["records_per_s"]) for side, rs in runs.items()}
        median = {side: statistics.median(r["records_per_s"] for r in rs) for side, rs in runs.items()}
        base = best["baseline"]
        print("\n| pipeline | records | seconds | records/s | CPU s | peak RSS MB (worker) | ratio |"
              + (" median records/s | median ratio |" if args.repeat > 1 else ""))
        print("|---|---|---|---|---|---|---|" + ("---|---|" if args.repeat > 1 else ""))
        for name, side in [("json.loads + apply_chat_template loop (baseline)", "baseline"),
                           ("llm_platform prepare_dataset (validate + format + split)", "ours")]:
            r = best[side]
            worker = f" ({r['worker_peak_rss_mb']:.0f})" if r["worker_peak_rss_mb"] else ""
            extra = (f" {median[side]:.0f} | {median[side] / median['baseline']:.2f}x |" if args.repeat > 1 else "")
            print(f"| {name} | {r['records']} | {r['seconds']:.1f} | {r['records_per_s']:.0f} | {r['cpu_seconds']:.1f} | "
                  f"{r['peak_rss_mb']:.0f}{worker} | {r['records_per_s'] / base['records_per_s']:.2f}x |" + extra,
                  flush=True)
        if args.repeat > 1:
            print("\nall runs, records/s: " + "; ".join(f"{side} " + ", ".join(f"{r['records_per_s']:.0f}" for r in rs)
                                                   for side, rs in runs.items()))
        print("\nmemory against file size (ours):")
        print("| records | file MB | peak RSS MB, parent | largest worker |")
        print("|---|---|---|---|")
        for n in [int(x) for x in args.sizes.split(",")]:
            p = d / f"m{n}.jsonl"
            make_jsonl(p, n, seed=1)
            r = side_in_subprocess("ours", p, d / f"om{n}")
            print(f"| {n} | {p.stat().st_size / 1e6:.0f} | {r['peak_rss_mb']:.0f} | {r['worker_peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
