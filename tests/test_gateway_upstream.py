"""The gateway's upstream pool against real OpenAI-shaped servers on loopback (no mocks).

Each upstream is `instant_upstream_app` under uvicorn in its own process (`UpstreamServer`);
killing one is SIGKILL, so clients see real resets and refused connections.
"""
import asyncio
import socket
import time

import orjson
import pytest

from llm_platform.serve.upstream import (
    NoHealthyReplica,
    ReplicaSpec,
    UnknownModel,
    UpstreamError,
    UpstreamPolicy,
    UpstreamPool,
    UpstreamServer,
)

CHAT = "/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstreams():
    "Shared servers, started in parallel: two instant ones, a 50 ms one, one answering 503, a slow streamer."
    servers = {"fast": UpstreamServer(name="m", version="fast"), "fast2": UpstreamServer(name="m", version="fast2"),
               "slow": UpstreamServer(name="m", version="slow", delay_s=0.05),
               "failing": UpstreamServer(name="m", version="failing", fail_status=503),
               "streamer": UpstreamServer(name="m", version="streamer", chunks=5, chunk_delay_s=0.2)}
    for s in servers.values():
        s.start(wait=False)
    try:
        for s in servers.values():
            s.wait_ready()
        yield servers
    finally:
        for s in servers.values():
            s.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)


async def make_pool(model_urls: dict[str, list[str]], **policy) -> UpstreamPool:
    pool = UpstreamPool(UpstreamPolicy(**policy))
    await pool.start()
    for model, urls in model_urls.items():
        pool.set_replicas(model, [ReplicaSpec(url=u, version=u.rsplit(":", 1)[1]) for u in urls])
    return pool


async def hammer(pool: UpstreamPool, n: int, concurrency: int, model: str = "m") -> list:
    "n requests from `concurrency` workers; returns the responses."
    out, left = [], iter(range(n))

    async def worker():
        for _ in left:
            out.append(await pool.request(model, CHAT, BODY))
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def served_by(responses, server) -> int:
    return sum(r.replica.url == server.url for r in responses)


def test_p2c_prefers_the_fast_replica(upstreams):
    async def go():
        pool = await make_pool({"m": [upstreams["fast"].url, upstreams["slow"].url]})
        try:
            await hammer(pool, 8, 1)  # a few samples for the EWMAs
            resps = await hammer(pool, 200, 16)
        finally:
            await pool.close()
        assert all(r.status == 200 for r in resps)
        fast, slow = served_by(resps, upstreams["fast"]), served_by(resps, upstreams["slow"])
        assert fast > 3 * slow, (fast, slow)
        assert fast + slow == 200
    run(go())


def test_least_outstanding_spreads_evenly(upstreams):
    async def go():
        pair = upstreams["fast"], upstreams["fast2"]
        for s in pair:  # 10 ms of "work" each, so that scheduling noise on a busy machine does not decide
            s.set_knobs(delay_s=0.01)
        pool = await make_pool({"m": [s.url for s in pair]}, balance="least_outstanding")
        try:
            resps = await hammer(pool, 200, 16)
        finally:
            await pool.close()
            for s in pair:
                s.set_knobs(delay_s=0.0)
        a, b = served_by(resps, upstreams["fast"]), served_by(resps, upstreams["fast2"])
        assert a + b == 200 and abs(a - b) <= 30, (a, b)
    run(go())


def test_refused_connections_are_retried_and_ejected(upstreams):
    async def go():
        dead = f"http://127.0.0.1:{free_port()}/v1"
        pool = await make_pool({}, health_interval_s=60, eject_after_failures=3, eject_s=30)
        try:
            await asyncio.sleep(0.05)  # let the first health round pass: only passive failures may eject `dead`
            pool.set_replicas("m", [ReplicaSpec(url=dead), ReplicaSpec(url=upstreams["fast"].url)])
            resps = await hammer(pool, 40, 4)
            bad, good = pool.models()["m"]
            assert all(r.status == 200 and r.replica is good for r in resps)
            assert bad.circuit == "open" and bad.consecutive_failures >= 3 and bad.served == 0
            assert bad.outstanding == 0 and good.outstanding == 0
        finally:
            await pool.close()
    run(go())


def test_5xx_is_retried_on_another_replica(upstreams):
    async def go():
        urls = [upstreams["failing"].url, upstreams["fast"].url]
        pool = await make_pool({"m": urls}, eject_after_failures=3)
        try:
            resps = await hammer(pool, 20, 2)
            assert all(r.status == 200 and r.replica.url == upstreams["fast"].url for r in resps)
            failing = pool.models()["m"][0]
            assert failing.circuit == "open" and failing.served == 0
        finally:
            await pool.close()
        # without retries the 503 reaches the caller, with its body
        pool = await make_pool({"m": [upstreams["failing"].url]}, retry_before_first_byte=False)
        try:
            resp = await pool.request("m", CHAT, BODY)
            assert resp.status == 503 and b"fails on purpose" in resp.body
        finally:
            await pool.close()
    run(go())


def test_kill_under_load():
    "Stop one of two replicas mid-run: only streams already running on it may fail; new traffic moves."
    async def go():
        a, b = (UpstreamServer(name="m", version=v, delay_s=0.005, chunks=10, chunk_delay_s=0.01) for v in "ab")
        a.start(wait=False); b.start(wait=False)
        a.wait_ready(); b.wait_ready()
        pool = await make_pool({"m": [a.url, b.url]}, health_interval_s=0.5)
        records, stop_at, killed_at = [], time.monotonic() + 2.0, [None]

        async def worker(i):
            while time.monotonic() < stop_at:
                stream, started = i % 2 == 0, time.monotonic()
                rec = {"stream": stream, "started": started, "url": None, "ok": False, "mid_stream": False}
                records.append(rec)
                try:
                    resp = await pool.request("m", CHAT, {**BODY, "stream": stream}, stream=stream)
                    rec["url"] = resp.replica.url
                    try:
                        n = len(b"".join([c async for c in resp.iter_chunks()]))
                    except Exception:
                        rec["mid_stream"] = True
                        raise
                    finally:
                        await resp.release()
                    rec["ok"] = resp.status == 200 and n > 0
                except Exception as e:
                    rec["error"] = repr(e)

        async def killer():
            await asyncio.sleep(0.8)
            killed_at[0] = time.monotonic()
            b.kill()
        try:
            await asyncio.gather(killer(), *(worker(i) for i in range(8)))
        finally:
            await pool.close()
            a.kill()
        failed = [r for r in records if not r["ok"]]
        # every failure is a stream that was already flowing from b when it died
        assert all(r["stream"] and r["mid_stream"] and r["url"] == b.url and r["started"] < killed_at[0]
                   for r in failed), failed
        after = [r for r in records if r["started"] > killed_at[0]]
        assert len(after) > 50 and all(r["ok"] and r["url"] == a.url for r in after)
        before_on_b = [r for r in records if r["started"] < killed_at[0] and r["url"] == b.url]
        assert len(before_on_b) > 10  # b did take traffic before it died
        rb = pool.models()["m"][1]
        assert rb.circuit == "open" or not rb.healthy
        print(f"kill under load: {len(records)} requests, {len(failed)} mid-stream failures, {len(after)} after the kill")
    run(go())


def test_all_down_then_recovery():
    async def go():
        up = UpstreamServer(name="m", version="v1").start()
        pool = await make_pool({"m": [up.url]}, health_interval_s=0.1, eject_s=30)
        try:
            assert (await pool.request("m", CHAT, BODY)).status == 200
            up.kill()
            with pytest.raises(UpstreamError):  # down, but not yet noticed by the health check
                await pool.request("m", CHAT, BODY)
            await wait_for(lambda: not pool.models()["m"][0].healthy)
            with pytest.raises(NoHealthyReplica) as info:
                await pool.request("m", CHAT, BODY)
            assert info.value.model == "m" and 0 <= info.value.retry_after_s <= 0.1
            assert "all 1 replicas of 'm' are down or ejected" in str(info.value)
            up.start()  # same port
            await wait_for(lambda: pool.models()["m"][0].healthy)
            resp = await pool.request("m", CHAT, BODY)
            assert resp.status == 200 and pool.snapshot()[0]["circuit"] == "closed"
            with pytest.raises(UnknownModel):
                await pool.request("other", CHAT, BODY)
        finally:
            await pool.close()
            up.kill()
    run(go())


async def wait_for(cond, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_stream_chunks_pass_through_as_they_arrive(upstreams):
    async def go():
        pool = await make_pool({"m": [upstreams["streamer"].url]})
        try:
            t0 = time.perf_counter()
            resp = await pool.request("m", CHAT, {**BODY, "stream": True}, stream=True)
            times, chunks = [], []
            try:
                async for c in resp.iter_chunks():
                    times.append(time.perf_counter() - t0); chunks.append(c)
            finally:
                await resp.release()
        finally:
            await pool.close()
        text = b"".join(chunks)
        assert text.endswith(b"data: [DONE]\n\n") and text.count(b"streamer-") == 5
        # the upstream needs 4 x 0.2 s; the first chunk must not wait for that
        assert times[0] < 0.15 and times[-1] >= 0.75, times
        assert len(chunks) >= 4  # arrived in pieces, not as one body
        assert resp.replica.outstanding == 0
    run(go())


def test_set_replicas_swap_and_drain(upstreams):
    async def go():
        old, new = upstreams["slow"], upstreams["fast"]
        pool = await make_pool({"m": [old.url]})
        try:
            inflight = [asyncio.create_task(pool.request("m", CHAT, BODY)) for _ in range(6)]
            await asyncio.sleep(0.02)
            (old_rep,) = pool.models()["m"]
            assert old_rep.outstanding == 6
            removed = pool.set_replicas("m", [ReplicaSpec(url=new.url, version="fast")])
            assert removed == [old_rep] and old_rep.retired
            fresh = await pool.request("m", CHAT, BODY)
            assert fresh.replica.url == new.url and fresh.headers["x-model-version"] == "fast"
            assert await pool.drain(removed, timeout_s=5)
            done = [t.result() for t in inflight]
            assert all(r.status == 200 and r.replica is old_rep for r in done)
            assert [s["url"] for s in pool.snapshot()] == [new.url]
            body = orjson.loads(done[0].body)
            assert body["choices"][0]["message"]["content"] == "m@slow: ok"
        finally:
            await pool.close()
    run(go())


def test_drain_times_out_while_a_stream_is_held(upstreams):
    async def go():
        pool = await make_pool({"m": [upstreams["streamer"].url]})
        try:
            resp = await pool.request("m", CHAT, {**BODY, "stream": True}, stream=True)
            (rep,) = pool.set_replicas("m", [ReplicaSpec(url=upstreams["fast"].url)])
            assert not await pool.drain([rep], timeout_s=0.05)
            await resp.release()  # client went away mid-stream: connection closed, not drained
            assert await pool.drain([rep], timeout_s=0.05) and rep.consecutive_failures == 0
        finally:
            await pool.close()
    run(go())


def test_half_open_trial_reopens_then_closes(upstreams):
    "After eject_s one trial request goes to the ejected replica: failure reopens, success closes."
    async def go():
        failing = upstreams["failing"]
        pool = await make_pool({}, health_interval_s=60, eject_after_failures=2, eject_s=0.2)
        await asyncio.sleep(0.05)
        pool.set_replicas("m", [ReplicaSpec(url=failing.url), ReplicaSpec(url=upstreams["fast"].url)])
        bad = pool.models()["m"][0]
        try:
            await hammer(pool, 10, 1)
            assert bad.circuit == "open" and bad.consecutive_failures == 2
            await asyncio.sleep(0.25)
            resp = await pool.request("m", CHAT, BODY)  # the trial fails (503), the retry succeeds
            assert resp.status == 200 and resp.replica is not bad
            assert bad.circuit == "open" and bad.retry_at > time.monotonic() + 0.1
            failing.set_knobs(fail_status=None)
            await asyncio.sleep(0.25)
            resp = await pool.request("m", CHAT, BODY)
            assert resp.status == 200 and resp.replica is bad and bad.circuit == "closed"
        finally:
            failing.set_knobs(fail_status=503)
            await pool.close()
    run(go())


def test_timeout_before_headers_is_retried(upstreams):
    "A replica that says nothing for longer than read_timeout_s counts as failed; the request goes elsewhere."
    async def go():
        slow = upstreams["slow"]
        slow.set_knobs(delay_s=1.0)
        pool = await make_pool({}, health_interval_s=60, read_timeout_s=0.15, eject_after_failures=2)
        await asyncio.sleep(0.05)
        pool.set_replicas("m", [ReplicaSpec(url=slow.url), ReplicaSpec(url=upstreams["fast"].url)])
        try:
            t0 = time.perf_counter()
            resps = await hammer(pool, 6, 1)
            assert all(r.status == 200 and r.replica.url == upstreams["fast"].url for r in resps)
            hung = pool.models()["m"][0]
            assert hung.circuit == "open" and hung.outstanding == 0
            assert time.perf_counter() - t0 < 1.0  # two timeouts of 0.15 s, not two waits of 1 s
        finally:
            slow.set_knobs(delay_s=0.05)
            await pool.close()
    run(go())
