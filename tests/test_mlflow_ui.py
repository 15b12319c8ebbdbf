"""The MLflow UI (a real `mlflow server` on the tests' tracking store, headless Chromium): the registry page
shows the `champion` alias the pipeline set, and a gate run shows its report among its artifacts."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from browser import ARGS, CHROMIUM, free_port

from llm_platform.core import read_json

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium not installed (make system-deps)")



@pytest.fixture(scope="module")
def mlflow_ui(tiny_run):
    "`mlflow server` on the session's tracking store, in its own process group (stopped with it)."
    port, uri = free_port(), f"sqlite:///{tiny_run['runs_dir']}/mlflow.db"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}     # no job-runner children
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], start_new_session=True, env=env,
                            stdout=open(tiny_run["runs_dir"] / "mlflow-ui.log", "w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tiny_run["runs_dir"] / "mlflow-ui.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url, uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def _page_text(url: str, click: list[str] = (), until: str = "") -> str:
    "The page's text once `until` shows, after clicking each text of `click` in turn (the UI polls: no network idle)."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(url)
        for text in click:
            item = page.get_by_text(text, exact=True).first
            item.wait_for(timeout=90_000)
            item.click()
        if until:
            page.get_by_text(until).first.wait_for(timeout=90_000)
        body = page.inner_text("body")
        browser.close()
    return " ".join(body.split())          # the UI puts non-breaking spaces in "Version 1"


def test_the_registry_page_shows_the_champion_alias(mlflow_ui, tiny_run):
    url, _ = mlflow_ui
    body = _page_text(f"{url}/#/models/{tiny_run['registered_model']}", until="@ champion")
    assert f"Version {tiny_run['registered_version']}" in body and "@ champion" in body, body[:2000]


def test_a_gate_run_shows_its_report_in_the_artifacts(mlflow_ui, tiny_run, tmp_path):
    "The gate's report, plot and decision, logged as 06_gate's runner logs them, open in the run's artifact view."
    from llm_platform.evaluation.gate import GateConfig, run_gate
    from llm_platform.evaluation.gate_report import log_gate_to_mlflow, write_gate_outputs
    url, uri = mlflow_ui
    evaluation = read_json(tiny_run["run_dir"] / "06_gate" / "metrics.json")["metrics"]["challenger_dir"]
    decision = run_gate(evaluation, evaluation, GateConfig())        # the run's model against itself: passes
    write_gate_outputs(decision, tmp_path)
    run_id = log_gate_to_mlflow(tmp_path, uri, experiment="gate-ui-test")
    from llm_platform.core import mlflow_client
    exp = mlflow_client(uri).get_run(run_id).info.experiment_id
    first_line = (tmp_path / "gate_report.md").read_text().splitlines()[0].lstrip("# ").strip()
    body = _page_text(f"{url}/#/experiments/{exp}/runs/{run_id}/artifacts", click=["gate", "gate_report.md"],
                      until=first_line)
    assert "gate_plot.png" in body and "gate_decision.json" in body and first_line in body, (first_line, body[:2000])
