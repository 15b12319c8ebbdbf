"""The gateway store against a real redis-server (and in process): exact limits under concurrency, across processes,
window resets, the cache, and what happens when Redis goes away and comes back."""
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from llm_platform.serve.store import LimitSpec, MemoryStore, RedisServer, RedisStore, StoreUnavailable, open_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_server():
    "One redis-server for the session (a short temp folder: unix socket paths are limited to 107 bytes)."
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def new_store(request):
    "A factory: call it inside the test's event loop (redis.asyncio binds to the loop it first runs in)."
    if request.param == "memory":
        return lambda: MemoryStore()
    url = request.getfixturevalue("redis_server").url
    # a generous timeout: these tests are about exactness, and other jobs share the 2 cores (faults: tests below)
    return lambda: RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}:", timeout_s=2)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_admit_exactly_the_limit(new_store):
    async def main():
        store, spec = new_store(), LimitSpec(requests=20)
        got = await asyncio.gather(*[store.reserve("key", spec, 1) for _ in range(200)])
        usage = await store.usage("key", spec)
        await store.close()
        return got, usage
    got, usage = run(main())
    allowed = [a for a, r in got if a.allowed]
    assert len(allowed) == 20 and usage["requests"] == 20 and usage["tokens"] == 20
    refused = [(a, r) for a, r in got if not a.allowed]
    assert all(a.reason == "requests" and r is None and a.remaining_requests == 0 and a.retry_after_s >= 1
               for a, r in refused)


def test_concurrent_token_reservations_admit_exactly_what_fits(new_store):
    async def main():
        store, spec = new_store(), LimitSpec(tokens=1000)
        got = await asyncio.gather(*[store.reserve("key", spec, 30) for _ in range(100)])
        usage = await store.usage("key", spec)
        await store.close()
        return got, usage
    got, usage = run(main())
    assert sum(a.allowed for a, _ in got) == 33 and usage["tokens"] == 990
    assert {a.reason for a, _ in got if not a.allowed} == {"tokens"}


def test_settle_returns_unused_budget_and_refusals_change_nothing(new_store):
    async def main():
        store, spec = new_store(), LimitSpec(requests=2, tokens=100)
        a1, r1 = await store.reserve("key", spec, 60)
        a2, r2 = await store.reserve("key", spec, 60)
        before = await store.usage("key", spec)
        for _ in range(3):                               # refusals leave the counters alone
            assert not (await store.reserve("key", spec, 60))[0].allowed
        now = await store.usage("key", spec)
        assert (now["requests"], now["tokens"]) == (before["requests"], before["tokens"])
        await store.settle(r1, 10)                       # 60 reserved, 10 used: 50 back
        await store.settle(r1, 10)                       # a second settle of the same reservation is a no-op
        after_settle = await store.usage("key", spec)
        a3, r3 = await store.reserve("key", spec, 60)   # now fits: 10 + 60
        a4, _ = await store.reserve("key", spec, 0)     # request limit (2) reached
        await store.settle(r3, 0)
        final = await store.usage("key", spec)
        await store.close()
        return a1, a2, r2, before, after_settle, a3, a4, final
    a1, a2, r2, before, after_settle, a3, a4, final = run(main())
    assert a1.allowed and not a2.allowed and a2.reason == "tokens" and r2 is None
    assert (before["requests"], before["tokens"]) == (1, 60)
    assert (after_settle["requests"], after_settle["tokens"]) == (1, 10)
    assert a3.allowed and a3.remaining_tokens == 30 and a3.remaining_requests == 0
    assert not a4.allowed and a4.reason == "requests"
    assert (final["requests"], final["tokens"]) == (2, 10)


def test_a_settle_in_flight_is_seen_by_the_next_reservation(new_store):
    "The gateway does not await the settle before replying: the next reservation must still see it."
    async def main():
        store, spec = new_store(), LimitSpec(tokens=100)
        _, r1 = await store.reserve("key", spec, 90)
        settling = asyncio.ensure_future(store.settle(r1, 1))     # 89 back, not awaited
        await asyncio.sleep(0)                                    # the gateway's reply goes out here
        a2, _ = await store.reserve("key", spec, 90)              # 1 + 90 <= 100 only if the settle came first
        await settling
        _, r3 = await store.reserve("key", spec, 0)
        t = time.perf_counter()
        await store.settle(r3, 5)                                 # alone: written within the batch window
        alone_s = time.perf_counter() - t
        usage = await store.usage("key", spec)
        await store.close()
        return a2, alone_s, usage
    a2, alone_s, usage = run(main())
    assert a2.allowed and usage["tokens"] == 96 and alone_s < 0.5


def test_settle_never_goes_below_zero_and_rejects_bad_input(new_store):
    async def main():
        store, spec = new_store(), LimitSpec(tokens=100)
        _, res = await store.reserve("key", spec, 5)
        res.reserved = 50                               # as if more had been reserved than counted
        await store.settle(res, 0)
        usage = await store.usage("key", spec)
        with pytest.raises(ValueError, match="tokens"):
            await store.reserve("key", spec, -1)
        with pytest.raises(ValueError, match="ttl"):
            await store.cache_set("k", b"v", 0)
        await store.close()
        return usage
    assert run(main())["tokens"] == 0


def test_window_resets_and_headers(new_store):
    async def main():
        store, spec = new_store(), LimitSpec(requests=2, window_s=1)
        usage = await store.usage("key", spec)
        if usage["reset_s"] < 0.5:                      # start early in a window so the two reserves share it
            await asyncio.sleep(usage["reset_s"] + 0.01)
        first = [await store.reserve("key", spec, 0) for _ in range(3)]
        refused = first[2][0]
        await asyncio.sleep(refused.reset_s + 0.05)
        again, res = await store.reserve("key", spec, 0)
        await store.close()
        return first, refused, again, res
    first, refused, again, res = run(main())
    assert [a.allowed for a, _ in first] == [True, True, False]
    assert refused.reason == "requests" and refused.retry_after_s == 1 and 0 < refused.reset_s <= 1
    assert refused.headers() == {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "0",
                                 "x-ratelimit-reset-requests": "1s", "retry-after": "1"}
    assert first[0][0].headers()["x-ratelimit-remaining-requests"] == "1" and "retry-after" not in first[0][0].headers()
    assert again.allowed and again.remaining_requests == 1 and res.window == first[0][1].window + 1


def test_cache_set_get_and_expiry(new_store):
    async def main():
        store = new_store()
        await store.cache_set("a", b"\x00bytes", ttl_s=60)
        await store.cache_set("short", b"x", ttl_s=0.15)
        got = await store.cache_get("a"), await store.cache_get("short"), await store.cache_get("missing")
        await asyncio.sleep(0.25)
        expired = await store.cache_get("short")
        await store.close()
        return got, expired
    got, expired = run(main())
    assert got == (b"\x00bytes", b"x", None) and expired is None


def test_memory_cache_is_a_bounded_lru():
    async def main():
        store = MemoryStore(max_cache_entries=3)
        for k in "abc":
            await store.cache_set(k, k.encode(), 60)
        await store.cache_get("a")                      # a is now the most recent
        await store.cache_set("d", b"d", 60)            # evicts b, the least recent
        return [await store.cache_get(k) for k in "abcd"], len(store._cache)
    assert run(main()) == ([b"a", None, b"c", b"d"], 3)
    assert MemoryStore().max_cache_entries == 10_000


def test_open_store():
    assert isinstance(open_store(None), MemoryStore) and isinstance(open_store("memory://"), MemoryStore)
    assert isinstance(open_store("redis://127.0.0.1:6379/0"), RedisStore)
    assert isinstance(open_store("unix:///tmp/r.sock"), RedisStore)
    with pytest.raises(ValueError, match="memory://"):
        open_store("postgres://x")


WORKER = textwrap.dedent("""
    import asyncio, json, sys
    from llm_platform.serve.store import LimitSpec, RedisStore

    async def main(url, prefix):
        store = RedisStore(url, prefix=prefix, timeout_s=5)   # atomicity under test, not latency: 2 busy cores
        await store.ping()
        print("ready", flush=True)
        sys.stdin.readline()
        got = await asyncio.gather(*[store.reserve("shared", LimitSpec(requests=50), 1) for _ in range(100)])
        await store.close()
        print(json.dumps(sum(a.allowed for a, _ in got)), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def test_two_processes_share_one_limit(redis_server):
    prefix = f"x{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, prefix], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        for p in procs:                                # both connected before either fires
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n"); p.stdin.flush()
        out = [p.stdout.readline() for p in procs]
        assert all(p.wait(30) == 0 for p in procs), [p.stderr.read()[-2000:] for p in procs]
        allowed = [int(o) for o in out]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(allowed) == 50, allowed

    async def usage():
        store = RedisStore(redis_server.url, prefix=prefix)
        u = await store.usage("shared", LimitSpec(requests=50))
        await store.close()
        return u
    assert run(usage())["requests"] == 50


def test_redis_down_raises_store_unavailable_then_recovers():
    spec = LimitSpec(requests=100)
    with tempfile.TemporaryDirectory(prefix="llmp-") as d, RedisServer(d) as server:
        async def main():
            store = RedisStore(server.url, prefix="f:")
            assert (await store.reserve("k", spec, 1))[0].allowed
            await store.cache_set("c", b"v", 60)
            server.stop()
            timings = {}
            for name, call in [("reserve", lambda: store.reserve("k", spec, 1)),
                               ("cache_get", lambda: store.cache_get("c")), ("ping", store.ping)]:
                t0 = time.monotonic()
                with pytest.raises(StoreUnavailable, match=str(server.socket_path)):
                    await call()
                timings[name] = time.monotonic() - t0
            server.start()                              # same socket path, empty data
            adm, res = await store.reserve("k", spec, 1)   # the same store object reconnects
            await store.settle(res, 1)
            u = await store.usage("k", spec)
            server.proc.kill(); server.proc.wait()      # SIGKILL leaves the socket file: connection refused
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match="reserve failed: (ConnectionRefused|BrokenPipe|ConnectionReset)Error"):
                await store.reserve("k", spec, 1)
            timings["refused"] = time.monotonic() - t0
            server.start()
            back = (await store.reserve("k", spec, 1))[0]
            await store.close()
            return timings, adm, u, back
        timings, adm, u, back = run(main())
    assert all(t < 1 for t in timings.values()), timings
    assert adm.allowed and adm.remaining_requests == 99 and u["requests"] == 1 and back.allowed


def test_redis_hung_times_out_then_recovers(redis_server):
    "A server that stops answering (SIGSTOP) costs one timeout (0.25 s), not a hang."
    async def main():
        store = RedisStore(redis_server.url, prefix=f"h{uuid.uuid4().hex[:8]}:", timeout_s=0.25)
        await store.ping()
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await store.cache_get("x")
            waited = time.monotonic() - t0
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        await store.cache_set("x", b"1", 60)
        value = await store.cache_get("x")
        await store.close()
        return waited, value
    waited, value = run(main())
    assert 0.2 < waited < 1 and value == b"1"


PARENT = textwrap.dedent("""
    import sys, time
    from llm_platform.serve.store import RedisServer
    server = RedisServer(sys.argv[1]).start()
    print(server.proc.pid, flush=True)
    time.sleep(60)
""")


def _alive(pid: int) -> bool:
    "Running and not a zombie (a reparented child may wait a moment for its new parent to reap it)."
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_redis_server_dies_with_its_parent():
    with tempfile.TemporaryDirectory(prefix="llmp-") as d:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        parent = subprocess.Popen([sys.executable, "-c", PARENT, d], stdout=subprocess.PIPE, text=True, env=env)
        try:
            pid = int(parent.stdout.readline())
            assert _alive(pid)
            parent.kill(); parent.wait()
            deadline = time.monotonic() + 2
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not _alive(pid), f"redis-server {pid} outlived its killed parent"
        finally:
            if parent.poll() is None:
                parent.kill()
            if "pid" in locals() and _alive(pid):     # do not leak a server if the test failed
                os.kill(pid, signal.SIGKILL)
