"""Tracing's own cost: the spans of one gateway request (a root and 6 children, the gateway's attributes) made
and ended through llm_platform.monitor.tracing.RequestTracer, exported to a no-op exporter (so the figure is the
OpenTelemetry SDK's span work, not the wire). CPU and wall time per request, 5 rounds of 5000, after a warm-up.

    PYTHONPATH=. .venv/bin/python bench/tracing_bench.py            # sample rates 1.0, 0.1, 0.0
    PYTHONPATH=. .venv/bin/python bench/tracing_bench.py 0.25
The gateway's whole cost with export over OTLP/HTTP: bench/gateway_bench.py --sides direct,ours,ours-traced.
"""
import os
import platform
import sys
import time

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llm_platform.monitor.tracing import RequestTracer, TracingSpec

STEPS = ("auth", "quota", "cache", "guardrails.pre", "upstream", "guardrails.post")


class Null(SpanExporter):
    spans = 0

    def export(self, spans):
        Null.spans += len(spans)
        return SpanExportResult.SUCCESS


def one(tr: RequestTracer, i: int):
    "One request's spans, the way TracedGateway makes them (no child spans when the root is not sampled)."
    rt = tr.start_request(f"req-{i:032x}", None, "POST", "/v1/chat/completions")
    root = rt.root
    if not root.is_recording():
        rt = None
    for name in STEPS:
        with tr.span(rt, name):
            pass
    root.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3,
                         "gen_ai.usage.output_tokens": 5, "http.response.status_code": 200})
    root.update_name("chat m")
    root.end()


def measure(rate: float, rounds: int = 5, n: int = 5000) -> list[tuple[float, float]]:
    Null.spans = 0
    tr = RequestTracer(TracingSpec(enabled=True, sample_rate=rate), exporter=Null())
    for i in range(2000):
        one(tr, i + 1)
    out = []
    for r in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            one(tr, 10_000 + r * n + i)
        out.append(((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6))
    tr.shutdown()
    return out


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


if __name__ == "__main__":
    rates = [float(x) for x in sys.argv[1:]] or [1.0, 0.1, 0.0]
    print(f"CPU {cpu_model()} | {os.cpu_count()} cores | load average {os.getloadavg()[0]:.2f} | Python {platform.python_version()}")
    for rate in rates:
        runs = measure(rate)
        cpu = sorted(c for _, c in runs)
        print(f"sample_rate {rate}: CPU us/request (process, incl. the export thread) min {cpu[0]:.1f} median "
              f"{cpu[len(cpu) // 2]:.1f} max {cpu[-1]:.1f}; wall median {sorted(w for w, _ in runs)[len(runs) // 2]:.1f} us; "
              f"{Null.spans} spans exported")
