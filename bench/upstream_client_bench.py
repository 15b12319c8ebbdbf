"""Client cost per request to an OpenAI-shaped upstream: aiohttp vs httpx vs `UpstreamPool` (our own httptools client).

Why the gateway's upstream pool has its own narrow HTTP/1.1 client (llm_platform.serve.httpclient)
rather than aiohttp or httpx. Every side talks to the same `instant_upstream_app`
running in its own process on loopback (so the upstream's CPU is not counted), first one request at
a time (latency percentiles), then from 32 concurrent tasks (throughput). "client CPU" is this
process's CPU time per request: the cost the gateway pays for forwarding, whatever the load.

    .venv/bin/python bench/upstream_client_bench.py
    .venv/bin/python bench/upstream_client_bench.py --seq 500 --conc 2000   # quick look

On a shared machine wall-clock numbers swing with the load; the CPU column is steadier.
"""
import argparse
import asyncio
import time

import aiohttp
import httpx
import orjson
import uvloop

from llm_platform.serve.upstream import ReplicaSpec, UpstreamPolicy, UpstreamPool, UpstreamServer

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def measure(name: str, call, n_seq: int, n_conc: int, conc: int) -> dict:
    for _ in range(100):  # warm the connections
        await call()
    lat, c0 = [], time.process_time()
    for _ in range(n_seq):
        t = time.perf_counter(); await call(); lat.append((time.perf_counter() - t) * 1e3)
    cpu_seq = (time.process_time() - c0) / n_seq * 1e6
    left = iter(range(n_conc))

    async def worker():
        for _ in left:
            await call()
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall, cpu = time.perf_counter() - t0, (time.process_time() - c0) / n_conc * 1e6
    lat.sort()
    row = dict(name=name, p50_ms=lat[len(lat) // 2], p95_ms=lat[int(len(lat) * 0.95)], cpu_us=cpu_seq,
               rps=n_conc / wall, cpu_conc_us=cpu)
    print(f"{name:22s} sequential p50 {row['p50_ms']:.3f} ms p95 {row['p95_ms']:.3f} ms, client CPU {cpu_seq:.0f} us"
          f" | {conc} concurrent: {row['rps']:.0f} req/s, client CPU {cpu:.0f} us", flush=True)
    return row


async def main(args):
    up = UpstreamServer(name="m").start()
    url, data, hdrs = up.url + "/chat/completions", orjson.dumps(BODY), {"content-type": "application/json"}
    run = lambda name, call: measure(name, call, args.seq, args.conc, args.concurrency)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
            async def with_aiohttp():
                async with s.post(url, data=data, headers=hdrs) as r:
                    await r.read()
            a = await run("aiohttp", with_aiohttp)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits) as c:
            async def with_httpx():
                (await c.post(url, content=data, headers=hdrs)).read()
            h = await run("httpx", with_httpx)
        async with UpstreamPool(UpstreamPolicy()) as pool:
            pool.set_replicas("m", [ReplicaSpec(url=up.url)])

            async def with_pool():
                await pool.request("m", "/chat/completions", BODY)
            await run("UpstreamPool", with_pool)

            async def with_pool_stream():
                r = await pool.request("m", "/chat/completions", {**BODY, "stream": True}, stream=True)
                try:
                    async for _ in r.iter_chunks():
                        pass
                finally:
                    await r.release()
            await run("UpstreamPool stream", with_pool_stream)
    finally:
        up.kill()
    print(f"httpx / aiohttp: client CPU {h['cpu_us'] / a['cpu_us']:.1f}x sequential, "
          f"{h['cpu_conc_us'] / a['cpu_conc_us']:.1f}x concurrent; throughput {a['rps'] / h['rps']:.1f}x for aiohttp")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=1500, help="sequential requests per side")
    ap.add_argument("--conc", type=int, default=4000, help="requests in the concurrent phase")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent tasks")
    uvloop.install()
    asyncio.run(main(ap.parse_args()))
