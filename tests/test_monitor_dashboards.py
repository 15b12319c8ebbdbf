"""The Grafana dashboards as code: every query names only metrics the package exports (the metric contract), a
recording rule, or a documented model-server metric; the checked-in JSON is what the code generates; the
provisioning files point where the compose file mounts the dashboards. (PromQL syntax is checked by a real
Prometheus in tests/test_monitor_prometheus.py.)"""
import json
from pathlib import Path

import pytest
import yaml

from llm_platform.monitor import dashboards as dash

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "monitoring" / "grafana"


@pytest.mark.parametrize("name", sorted(dash.DASHBOARDS))
def test_every_query_names_known_metrics(name):
    board = dash.DASHBOARDS[name]()
    exprs = dash.dashboard_exprs(board)
    assert len(exprs) >= 5
    assert dash.unknown_metrics(exprs, dash.known_metric_names()) == {}
    used = set().union(*map(dash.promql_metric_names, exprs))
    assert used, name


def test_the_check_catches_a_misspelled_metric():
    known = dash.known_metric_names()
    assert dash.unknown_metrics(['sum(rate(llmp_gateway_request_total{model="m"}[5m]))'], known)   # "requests"
    assert dash.unknown_metrics(["model_version:llmp_gateway_requests:error_ratio_1m"], known)      # no such rule
    assert not dash.unknown_metrics(["model_version:llmp_gateway_requests:error_ratio_5m"], known)


def test_recording_rules_the_dashboards_read_exist():
    rules = dash.recording_rule_names(ROOT / "deploy/monitoring/prometheus/rules")
    used = {n for b in dash.DASHBOARDS.values() for e in dash.dashboard_exprs(b()) for n in dash.promql_metric_names(e)
            if n.startswith("model_version:")}
    assert used and used <= rules


def test_checked_in_files_are_generated(tmp_path):
    written = dash.write_dashboards(tmp_path)
    for p in written:
        rel = p.relative_to(tmp_path)
        assert (GRAFANA / rel).read_text() == p.read_text(), f"{GRAFANA / rel} is stale: run write_dashboards()"
    boards = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
    assert len({b["uid"] for b in boards}) == len(boards) == 4
    per_version = next(b for b in boards if b["uid"] == "llmp-model-version")
    assert {v["name"] for v in per_version["templating"]["list"]} == {"datasource", "model", "version"}


def test_provisioning_matches_the_compose_mounts():
    compose = yaml.safe_load((ROOT / "deploy/monitoring/docker-compose.monitoring.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/llm_platform.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["uid"] == "prometheus" and ds["url"].endswith(":9090")


def test_compose_file_is_well_formed():
    "No compose tool is installed here, so: the structure, pinned images, and every mounted host path exists."
    path = ROOT / "deploy/monitoring/docker-compose.monitoring.yml"
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "alertmanager", "grafana", "jaeger"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                if "runs/" not in src:                      # runs/monitoring/targets is written at run time
                    assert (path.parent / src).exists(), (name, vol)
            else:
                assert src in compose["volumes"], (name, vol)
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
