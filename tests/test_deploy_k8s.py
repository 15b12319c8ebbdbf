"""Kubernetes manifests, offline: every overlay renders (pinned kubectl's kustomize), passes strict schema
validation (kubernetes-validate) and checkov, equals what its environment YAML renders, and the rendered
NetworkPolicies, blue/green selectors and cross references mean what the docs say.

The validators are installed once by deploy/k8s/tools.sh into .cache/tools/ (pinned; ~70 s cold, nothing warm).
"""
from __future__ import annotations

import filecmp
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from llm_platform.config import STEPS, ConfigError, load_config
from llm_platform.deploy.environments import (
    EnvironmentConfig,
    Pod,
    list_environments,
    load_environment,
    policy_allows,
    render_all,
)

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.32.0"                      # the schema version the overlays are validated against
CRD_KINDS = {"ExternalSecret", "ScaledObject", "ServiceMonitor"}   # no schema shipped: checked below instead
CLUSTER_ENVS = [e for e in list_environments() if load_environment(e).kubernetes]


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    subprocess.run(["bash", str(K8S / "tools.sh")], check=True, timeout=900)
    out = subprocess.run(["bash", str(K8S / "tools.sh"), "--env"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


@pytest.fixture(scope="module")
def rendered(tools, tmp_path_factory) -> dict[str, Path]:
    "Each overlay rendered by kustomize to one multi-document file."
    d = tmp_path_factory.mktemp("rendered")
    out = {}
    for env in CLUSTER_ENVS:
        r = subprocess.run([tools["KUBECTL"], "kustomize", str(K8S / "overlays" / env)], capture_output=True, text=True)
        assert r.returncode == 0, f"kustomize {env}: {r.stderr}"
        (out_file := d / f"{env}.yaml").write_text(r.stdout)
        out[env] = out_file
    return out


def docs(path: Path) -> list[dict]:
    return [x for x in yaml.safe_load_all(path.read_text()) if x]


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict]) -> dict[str, dict]:
    "name -> pod template spec (Deployments, Jobs, CronJobs)."
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            out[o["metadata"]["name"]] = o["spec"]["template"]
        elif o["kind"] == "CronJob":
            out[o["metadata"]["name"]] = o["spec"]["jobTemplate"]["spec"]["template"]
    return out


def test_environments_load_and_choose_by_variable(monkeypatch):
    assert set(list_environments()) == {"local", "development", "staging", "production"}
    for name in list_environments():
        env = load_environment(name)
        assert env.name == name
        load_config(ROOT / "configs/environments" / f"{name}.yaml")     # by folder: CONFIG_KINDS["environments"]
    monkeypatch.setenv("LLMP_ENV", "staging")
    assert load_environment().name == "staging"
    monkeypatch.delenv("LLMP_ENV")
    assert load_environment().name == "local"


def test_environment_errors_name_file_and_field(tmp_path, monkeypatch):
    data = yaml.safe_load((ROOT / "configs/environments/staging.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data | {"replicas": 3}))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*replicas"):
        load_config(bad, kind=EnvironmentConfig)
    data["images"]["serving"]["tag"] = "latest"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="must be pinned"):
        load_config(bad, kind=EnvironmentConfig)


def test_committed_overlays_equal_render(tmp_path):
    "The environment YAML is the single source: rendering again changes nothing that is committed."
    render_all(tmp_path)
    for env in CLUSTER_ENVS:
        for f in (tmp_path / "overlays" / env).rglob("*"):
            if f.is_file():
                committed = K8S / f.relative_to(tmp_path)
                assert committed.exists() and filecmp.cmp(f, committed, shallow=False), (
                    f"{committed} differs from what configs/environments/{env}.yaml renders: "
                    "run `llm-platform deploy render` (llm_platform.deploy.environments.render_all)")
    for f in (tmp_path / "base" / "files").iterdir():
        assert filecmp.cmp(f, K8S / "base" / "files" / f.name, shallow=False), f"base/files/{f.name} is stale"
    assert {p.name for p in (K8S / "overlays").iterdir()} == set(CLUSTER_ENVS)


def test_strict_schema_validation(tools, rendered, tmp_path):
    for env, path in rendered.items():
        r = subprocess.run([tools["KUBERNETES_VALIDATE"], "--strict", "-k", K8S_VERSION, str(path)],
                           capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"{env}: {out}"
        unvalidated = {line.split("kind ")[1].split()[0] for line in out.splitlines() if "Couldn't find schema" in line}
        assert unvalidated <= CRD_KINDS, f"{env}: no schema for {unvalidated - CRD_KINDS}"
        assert "passed for resource deployment/gateway" in out
    # strict means strict: a misspelt field fails
    objs = docs(next(iter(rendered.values())))
    dep = by_kind(objs, "Deployment")["gateway"]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    (bad := tmp_path / "bad.yaml").write_text(yaml.safe_dump(dep))
    r = subprocess.run([tools["KUBERNETES_VALIDATE"], "--strict", "-k", K8S_VERSION, str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "periodSecond" in r.stdout + r.stderr


def test_checkov_no_failed_check(tools, rendered, tmp_path):
    "Every check passes but the accepted ones in deploy/k8s/checkov.yaml; a privileged pod beside them is caught."
    for env, path in rendered.items():
        (tmp_path / f"{env}.yaml").write_text(path.read_text())
    (tmp_path / "zz-bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "x:1", "securityContext": {"privileged": True}}]}}))
    r = subprocess.run([tools["CHECKOV"], "-d", str(tmp_path), "--config-file", str(K8S / "checkov.yaml"), "-o", "json"],
                       capture_output=True, text=True, timeout=600)
    report = json.loads(r.stdout)
    report = report if isinstance(report, dict) else next(x for x in report if x["check_type"] == "kubernetes")
    failed = report["results"]["failed_checks"]
    ours = [f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})" for f in failed if "zz-bad" not in f["file_path"]]
    assert not ours, "\n".join(ours)
    assert any(f["check_id"] == "CKV_K8S_16" for f in failed), "checkov did not flag the privileged pod"
    assert report["summary"]["resource_count"] > 3 * 40


POD_PORTS = {"http": 8000}


def pods(env: EnvironmentConfig) -> dict[str, Pod]:
    ns = env.namespace
    return {
        "gateway": Pod(namespace=ns, labels={"app.kubernetes.io/name": "gateway"}, ports={"http": 8080}),
        "model-blue": Pod(namespace=ns, labels={"app.kubernetes.io/name": "model-server", "track": "blue"}, ports=POD_PORTS),
        "model-green": Pod(namespace=ns, labels={"app.kubernetes.io/name": "model-server", "track": "green"}, ports=POD_PORTS),
        "redis": Pod(namespace=ns, labels={"app.kubernetes.io/name": "redis"}, ports={"redis": 6379}),
        "pipeline": Pod(namespace=ns, labels={"app.kubernetes.io/name": "pipeline"}),
        "other": Pod(namespace=ns, labels={"app.kubernetes.io/name": "debug-shell"}),
        "prometheus": Pod(namespace="monitoring", labels={"app.kubernetes.io/name": "prometheus"}),
        "monitoring-other": Pod(namespace="monitoring", labels={"app.kubernetes.io/name": "grafana"}),
        "ingress": Pod(namespace="ingress-nginx", labels={"app.kubernetes.io/name": "ingress-nginx"}),
        "elsewhere": Pod(namespace="default", labels={"app.kubernetes.io/name": "gateway"}),
        "dns": Pod(namespace="kube-system", labels={"k8s-app": "kube-dns"}),
    }


@pytest.mark.parametrize("env_name", CLUSTER_ENVS)
def test_network_policies_mean_what_they_say(rendered, env_name):
    env = load_environment(env_name)
    pol = list(by_kind(docs(rendered[env_name]), "NetworkPolicy").values())
    assert all(p["metadata"]["namespace"] == env.namespace for p in pol)
    P = pods(env)
    allowed = {("gateway", "model-blue", 8000), ("gateway", "model-green", 8000), ("gateway", "redis", 6379),
               ("ingress", "gateway", 8080), ("pipeline", "gateway", 8080),
               ("prometheus", "gateway", 8080), ("prometheus", "model-blue", 8000), ("prometheus", "model-green", 8000)}
    denied = {("other", "model-blue", 8000), ("pipeline", "model-blue", 8000), ("redis", "model-blue", 8000),
              ("elsewhere", "model-blue", 8000), ("elsewhere", "gateway", 8080), ("other", "redis", 6379),
              ("model-blue", "gateway", 8080), ("model-blue", "redis", 6379), ("monitoring-other", "model-blue", 8000),
              ("prometheus", "redis", 6379), ("gateway", "model-blue", 22), ("gateway", "pipeline", 8080),
              ("other", "gateway", 8080), ("pipeline", "redis", 6379)}
    for src, dst, port in allowed:
        assert policy_allows(pol, P[src], P[dst], port), f"{env_name}: {src} -> {dst}:{port} should be allowed"
    for src, dst, port in denied:
        assert not policy_allows(pol, P[src], P[dst], port), f"{env_name}: {src} -> {dst}:{port} should be denied"
    for name in ("gateway", "model-blue", "redis", "pipeline", "other"):   # DNS for every pod (default deny otherwise)
        assert policy_allows(pol, P[name], P["dns"], 53, "UDP")
    # each allow and deny above comes from a policy: drop one and the answer changes
    assert not policy_allows([p for p in pol if p["metadata"]["name"] != "model-server"], P["gateway"], P["model-blue"], 8000)
    assert not policy_allows(pol, P["elsewhere"], P["other"], 8080)       # only default-deny closes this one
    assert policy_allows([p for p in pol if p["metadata"]["name"] != "default-deny"], P["elsewhere"], P["other"], 8080)
    assert not policy_allows(pol, P["other"], P["elsewhere"], 8080)       # egress: default-deny and the DNS-only rule
    assert policy_allows([p for p in pol if p["metadata"]["name"] not in ("default-deny", "allow-dns-egress")],
                         P["other"], P["elsewhere"], 8080)


@pytest.mark.parametrize("env_name", CLUSTER_ENVS)
def test_blue_green_and_autoscaling_follow_the_environment(rendered, env_name):
    env = load_environment(env_name)
    objs = docs(rendered[env_name])
    svc, dep = by_kind(objs, "Service"), by_kind(objs, "Deployment")
    assert svc["model-server"]["spec"]["selector"] == {"app.kubernetes.io/name": "model-server", "track": env.active_track}
    for t in ("blue", "green"):
        assert svc[f"model-server-{t}"]["spec"]["selector"]["track"] == t
        labels = dep[f"model-server-{t}"]["spec"]["template"]["metadata"]["labels"]
        assert labels["track"] == t
    assert dep[f"model-server-{env.active_track}"]["spec"]["replicas"] == env.model_server.active_replicas
    assert dep[f"model-server-{env.standby_track}"]["spec"]["replicas"] == env.model_server.standby_replicas
    for name, s in svc.items():          # every Service selects some pod template
        assert any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in s["spec"]["selector"].items())
                   for d in dep.values()), f"Service {name} selects nothing"
    so = by_kind(objs, "ScaledObject")["model-server"]["spec"]
    assert so["scaleTargetRef"]["name"] == f"model-server-{env.active_track}"
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (env.model_server.min_replicas, env.model_server.max_replicas)
    trig = so["triggers"][0]
    assert trig["type"] == "prometheus" and trig["metadata"]["query"].startswith(f"sum({env.model_server.queue_metric}{{")
    assert f'namespace="{env.namespace}"' in trig["metadata"]["query"] and float(trig["metadata"]["threshold"]) == env.model_server.queue_target
    hpa = by_kind(objs, "HorizontalPodAutoscaler")["gateway"]["spec"]
    assert hpa["scaleTargetRef"]["name"] in dep and hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (env.gateway.min_replicas, env.gateway.max_replicas)
    pdb = by_kind(objs, "PodDisruptionBudget")
    assert pdb["gateway"]["spec"]["minAvailable"] == env.gateway.min_available
    assert pdb["gateway"]["spec"]["minAvailable"] < hpa["minReplicas"], "a PDB as large as the fleet blocks node drains"
    for t in ("blue", "green"):
        assert pdb[f"model-server-{t}"]["spec"]["minAvailable"] == env.model_server.min_available < so["minReplicaCount"]


@pytest.mark.parametrize("env_name", CLUSTER_ENVS)
def test_workloads_images_probes_security(rendered, env_name):
    env = load_environment(env_name)
    objs = docs(rendered[env_name])
    specs = pod_specs(objs)
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] != "Namespace"} == {env.namespace}
    assert by_kind(objs, "Namespace").keys() == {env.namespace}
    for name, tmpl in specs.items():
        spec = tmpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
            if name == "redis":
                continue
            which = "papermill" if name.startswith("pipeline") or name == "monitor" else "serving"
            assert c["image"] == env.images.ref(which), f"{name}: {c['image']}"
    dep = by_kind(objs, "Deployment")
    gw = dep["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert "/health" in " ".join(gw["readinessProbe"]["exec"]["command"])
    assert gw["args"][len(gw["args"]) - len(env.gateway_overrides):] == env.gateway_overrides
    for t in ("blue", "green"):
        ms = dep[f"model-server-{t}"]["spec"]["template"]["spec"]
        c = ms["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        assert c["resources"] == env.model_server.resources.k8s()
        assert ms.get("nodeSelector", {}) == env.model_server.node_selector
        assert env.model_name in c["args"]
        if env.model_server.engine == "vllm":
            assert c["command"] == ["vllm", "serve"]
    if env.model_server.resources.gpu:
        assert c["resources"]["limits"]["nvidia.com/gpu"] == str(env.model_server.resources.gpu) and ms["tolerations"]


@pytest.mark.parametrize("env_name", CLUSTER_ENVS)
def test_references_resolve(rendered, env_name):
    "Secrets, config maps, service accounts, ServiceMonitor ports and claims named by pods exist in the render."
    env = load_environment(env_name)
    objs = docs(rendered[env_name])
    specs = pod_specs(objs)
    secrets = {e["spec"]["target"]["name"] for e in by_kind(objs, "ExternalSecret").values()}
    for e in by_kind(objs, "ExternalSecret").values():
        assert e["spec"]["secretStoreRef"]["name"] and all("remoteRef" in d and "value" not in d for d in e["spec"]["data"])
    assert not by_kind(objs, "Secret"), "secret values in manifests"
    cms, sas = by_kind(objs, "ConfigMap"), by_kind(objs, "ServiceAccount")
    claims = by_kind(objs, "PersistentVolumeClaim")
    for name, tmpl in specs.items():
        spec = tmpl["spec"]
        assert spec["serviceAccountName"] in sas
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, (name, v)
            if "configMap" in v:
                assert v["configMap"]["name"] in cms, (name, v)
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
        for c in spec["containers"]:
            for e in c.get("env", []):
                if "valueFrom" in e:
                    assert e["valueFrom"]["secretKeyRef"]["name"] in secrets
            for e in c.get("envFrom", []):
                assert e["secretRef"]["name"] in secrets
    gw_cm = next(v for k, v in cms.items() if k.startswith("gateway-config"))
    assert gw_cm["data"]["gateway.yaml"] == (ROOT / env.gateway_config).read_text()
    svc = by_kind(objs, "Service")
    for sm in by_kind(objs, "ServiceMonitor").values():
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in svc.values() if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert matched and all(any(p["name"] == ep["port"] for p in s["spec"]["ports"])
                               for s in matched for ep in sm["spec"]["endpoints"])


def test_one_job_per_pipeline_step(rendered):
    objs = docs(next(iter(rendered.values())))
    jobs = by_kind(objs, "Job")
    steps = {j["metadata"]["labels"]["llm-platform/step"] for j in jobs.values()}
    assert steps == set(STEPS) - {"08_monitor"}
    assert all(j["spec"]["suspend"] is True for j in jobs.values()), "applying an overlay must not start a pipeline"
    for j in jobs.values():
        step = j["metadata"]["labels"]["llm-platform/step"]
        assert f'steps=["{step}"]' in j["spec"]["template"]["spec"]["containers"][0]["args"]
    cron = by_kind(objs, "CronJob")["monitor"]
    assert 'steps=["08_monitor"]' in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]


def test_local_has_no_overlay():
    assert not load_environment("local").kubernetes and not (K8S / "overlays" / "local").exists()


def test_cli_render_prints_what_kustomize_renders(tools, rendered):
    "`llm-platform deploy render --env staging` (what deploy/scripts/deploy.sh applies) = the overlay as kustomize renders it."
    import sys
    out = subprocess.run([sys.executable, "-m", "llm_platform.cli", "deploy", "render", "--env", "staging"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PATH": str(Path(tools["KUBECTL"]).parent)
                                                                        + os.pathsep + os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout == rendered["staging"].read_text()
