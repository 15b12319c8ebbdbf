"""The `monitor` commands behind `make start-monitoring`, `make check-health` and `make view-metrics`, as a user runs
them: real Prometheus, Alertmanager and monitor agent started by `llm-platform monitor start`, a real gateway with an
instant upstream; SIGTERM (twice) stops all of them."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "llm_platform.cli"]
pytestmark = pytest.mark.skipif(not Path("/usr/bin/prometheus").exists(), reason="make system-deps installs prometheus")


def cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring")
    path = tmp / "monitoring.yaml"
    path.write_text(yaml.safe_dump({
        "prometheus": {"port": free_port(), "data_dir": str(tmp / "prom"), "scrape_interval": "1s",
                       "evaluation_interval": "1s"},
        "alertmanager": {"port": free_port(), "data_dir": str(tmp / "am")},
        "gateway_url": f"http://127.0.0.1:{free_port()}",      # no gateway there: health must say so
        "state_dir": str(tmp / "gateway"), "work_dir": str(tmp / "work"),
        "agent": {"port": free_port(), "history_path": None,
                  "policy": {"audit_path": str(tmp / "alerts.jsonl"), "state_path": str(tmp / "alert_state.json"),
                             "registry_audit_path": str(tmp / "registry_audit.jsonl")}},
    }))
    return path


def started(proc: subprocess.Popen, timeout_s: float = 60) -> dict:
    "The URLs `monitor start` prints as its one JSON line on stdout, once everything answers."
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("{"):
            return json.loads(line)
        if proc.poll() is not None:
            pytest.fail(f"monitor start exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
    pytest.fail("monitor start printed no URLs")


def test_start_health_metrics_and_stop(config):
    proc = subprocess.Popen([*CLI, "monitor", "start", "--config", str(config)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        urls = started(proc)
        assert set(urls) == {"agent", "prometheus", "alertmanager"}
        kids = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(k.cmdline()) for k in kids)
        assert "prometheus" in names and "alertmanager" in names and "llm_platform.monitor.alerts" in names

        health = cli("monitor", "health", "--config", str(config))
        assert health.returncode == 1, health.stdout + health.stderr      # the gateway is down
        state = dict(re.split(r"\s{2,}", line)[:2] for line in health.stdout.splitlines())
        assert state == {"gateway": "DOWN", "prometheus": "up", "alertmanager": "up", "monitor agent": "up"}, health.stdout
        # Prometheus scrapes the agent (its address comes from the agent section, not repeated)
        deadline = time.monotonic() + 20
        from llm_platform.monitor.stack import query
        while time.monotonic() < deadline:
            up = {r["metric"]["job"]: r["value"][1] for r in query(urls["prometheus"], "up")}
            if up.get("monitor_agent") == "1" and "gateway" in up:     # both scraped at least once
                break
            time.sleep(0.5)
        assert up.get("monitor_agent") == "1" and up.get("gateway") == "0", up

        metrics = cli("monitor", "metrics", "--config", str(config))
        assert metrics.returncode == 0 and "no series yet" in metrics.stdout, metrics.stdout + metrics.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)         # a second one must not interrupt the stopping
        proc.wait(timeout=60)
    time.sleep(0.5)
    alive = [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [k.cmdline() for k in alive]


def test_alerts_dry_run_names_the_policy_action(config, tmp_path):
    body = {"version": "4", "status": "firing", "receiver": "llmp-monitor-agent", "groupKey": "g",
            "alerts": [{"status": "firing", "labels": {"alertname": "QualityProbeFailing", "model": "demo",
                                                        "version": "demo/2"}, "fingerprint": "f1"},
                       {"status": "firing", "labels": {"alertname": "InputDriftDetected", "model": "demo",
                                                        "version": "demo/2"}, "fingerprint": "f2"}]}
    payload = tmp_path / "alert.json"
    payload.write_text(json.dumps(body))
    out = cli("monitor", "alerts", str(payload), "--config", str(config), "--dry-run",
              "--set", "agent.policy.rules=[{alertname: QualityProbeFailing, action: rollback}]")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["QualityProbeFailing model=demo version=demo/2 status=firing: rollback",
                                       "InputDriftDetected model=demo version=demo/2 status=firing: notify"]
    assert not (tmp_path / "alerts.jsonl").exists()
