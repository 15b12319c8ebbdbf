"""The monitoring report's cost on a day of traffic: N synthetic request records (two model versions,
seven tenants, the status mix of a busy gateway) written the way the gateway writes them
(`AuditLog.append_many`, unscrubbed structured fields), then `build_report` over 24 h at a 5-minute step;
the chain check (`verify_log`) and the reading (`read_audit`) are also timed alone.

    .venv/bin/python bench/monitor_report_bench.py              # 100,000 records
    .venv/bin/python bench/monitor_report_bench.py --n 1000000
"""
import argparse
import random
import tempfile
import time
from pathlib import Path

from llm_platform.monitor.report import MonitorReportSpec, build_report, check_chain, read_audit
from llm_platform.security.audit import AuditLog


def main(n: int, seed: int = 0):
    d = Path(tempfile.mkdtemp())
    log, rng, t0 = AuditLog(d / "audit.jsonl", key_env=None), random.Random(seed), time.time() - 86400
    batch = []
    for i in range(n):
        st = rng.choices([200, 400, 429, 503], [0.93, 0.02, 0.03, 0.02])[0]
        batch.append(("request", "k", dict(
            request_id=f"req-{i}", tenant=f"t{i % 7}", model="demo", version=rng.choice(["demo/7", "demo/8"]),
            status=st, stream=False, prompt_tokens=50, completion_tokens=120 if st == 200 else 0,
            latency_ms=rng.lognormvariate(6, 0.5), cache=rng.choice(["hit", "miss", "bypass"]), guardrails=[],
            error="rate_limit_requests" if st == 429 else None, ts=t0 + i * 86400 / n)))
    log.append_many(batch, scrub_data=False)
    t = time.perf_counter()
    r = build_report(MonitorReportSpec(audit_path=str(d / "audit.jsonl"), key_env=None, window="24h", step="5m"),
                     d / "out")
    total = time.perf_counter() - t
    t = time.perf_counter(); check_chain(d / "audit.jsonl", None); chain = time.perf_counter() - t
    t = time.perf_counter(); read_audit(d / "audit.jsonl", t0, t0 + 90000); read = time.perf_counter() - t
    print(f"{n} records: build_report {total:.1f} s (verify_log {chain:.1f} s, read_audit {read:.1f} s), "
          f"page {(d / 'out' / 'report.html').stat().st_size // 1024} KiB\n{r['headline']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    main(ap.parse_args().n)
