"""Process hygiene: servers a command starts stop with it, however it is stopped.

`llm-platform demo` and `serve` start their servers inside `core.ChildProcesses`, each with
`core.parent_death_hook()`. vLLM is too heavy to start here and the demo has no seam to swap it,
so these tests drive that shared helper the way the demo does, with real processes: a parent in
its own process group starts three servers (each in its own session, as VLLMServer and
GatewayProcess start theirs) that take a moment to stop, then gets SIGINT or SIGTERM to its group
once or twice (as `timeout`, systemd and `docker stop` send them), or SIGKILL.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    time.sleep(0.6)                           # a server takes a moment to shut down
    marker.write_text("stopped"); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
marker.write_text("up")
while True:
    time.sleep(1)
"""

PARENT = """
import os, signal, subprocess, sys, time
from pathlib import Path
from llm_platform.core import ChildProcesses, parent_death_hook

class Server:
    "Starts and stops like VLLMServer: own session, parent-death signal, SIGTERM to the group then SIGKILL."
    def __init__(self, marker): self.marker, self.proc = marker, None
    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", sys.argv[2], self.marker], start_new_session=True,
                                     preexec_fn=parent_death_hook())
        while not Path(self.marker).exists(): time.sleep(0.02)
        return self
    def stop(self, grace=5):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try: self.proc.wait(grace)
        except subprocess.TimeoutExpired: os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait()

with ChildProcesses() as children:
    servers = [children.add(Server(f"{sys.argv[1]}/server{i}")).start() for i in range(3)]
    print("READY", *[s.proc.pid for s in servers], flush=True)
    while True:
        time.sleep(1)
print("STOPPED", flush=True)
"""


def alive(pid: int) -> bool:
    "Running (a zombie waiting for a reaper has exited)."
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def start_parent(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), SERVER], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = p.stdout.readline().split()
    assert line[:1] == ["READY"], line
    pids = [int(x) for x in line[1:]]
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    return p, pids


@pytest.fixture
def started():
    "Start the parent with `started(tmp_path)`; whatever a failing test leaves running is killed afterwards."
    pids = []
    def start(tmp_path):
        parent, children = start_parent(tmp_path)
        pids.extend([parent.pid, *children])
        return parent, children
    yield start
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_group_stops_every_server(tmp_path, started, sig, times):
    parent, pids = started(tmp_path)
    for _ in range(times):                 # the second comes while the first server is still stopping
        os.killpg(parent.pid, sig)
        time.sleep(0.3)
    out, _ = parent.communicate(timeout=20)
    assert parent.returncode == 0 and "STOPPED" in out, (parent.returncode, out)
    assert wait_gone(pids, timeout=2) == []
    assert [(tmp_path / f"server{i}").read_text() for i in range(3)] == ["stopped"] * 3   # each asked, none killed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_servers_exit_when_the_parent_is_killed(tmp_path, started):
    parent, pids = started(tmp_path)
    parent.kill()
    parent.wait(5)
    assert wait_gone(pids) == [], "servers outlived a SIGKILLed parent"
    assert [(tmp_path / f"server{i}").read_text() for i in range(3)] == ["stopped"] * 3
