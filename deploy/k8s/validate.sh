#!/usr/bin/env bash
# Offline validation of the Kubernetes overlays (what `make lint-k8s` runs; no cluster needed):
#   1. the committed overlays equal what configs/environments/<env>.yaml renders (render_all into a temp copy)
#   2. each overlay renders with the pinned kubectl's kustomize
#   3. kubernetes-validate --strict against Kubernetes $K8S_VERSION schemas (CRDs: ExternalSecret, ScaledObject,
#      ServiceMonitor have no schema there; tests/test_deploy_k8s.py checks their fields and references)
#   4. checkov with deploy/k8s/checkov.yaml (accepted findings listed there): any failed check fails
# Then the semantic tests: tests/test_deploy_k8s.py (NetworkPolicies, blue/green selector, references).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.32.0}"
PY="${PY:-.venv/bin/python}"
bash deploy/k8s/tools.sh
eval "$(bash deploy/k8s/tools.sh --env)"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
echo "+ render_all -> $out/k8s (compare with deploy/k8s)"
PYTHONPATH="$ROOT" "$PY" -c "import sys; from llm_platform.deploy.environments import render_all; render_all(sys.argv[1])" "$out/k8s"
diff -r "$out/k8s/overlays" deploy/k8s/overlays
diff -r "$out/k8s/base/files" deploy/k8s/base/files
for d in deploy/k8s/overlays/*/; do
  env="$(basename "$d")"
  echo "+ $KUBECTL kustomize $d"
  "$KUBECTL" kustomize "$d" > "$out/$env.yaml"
  echo "+ kubernetes-validate --strict -k $K8S_VERSION $env"
  "$KUBERNETES_VALIDATE" --strict --quiet -k "$K8S_VERSION" "$out/$env.yaml" 2>&1 | grep -v "Couldn't find schema for kind \(ExternalSecret\|ScaledObject\|ServiceMonitor\)" || true
  "$KUBERNETES_VALIDATE" --strict --quiet --no-warn -k "$K8S_VERSION" "$out/$env.yaml" >/dev/null
done
echo "+ checkov -d $out --config-file deploy/k8s/checkov.yaml"
"$CHECKOV" -d "$out" --config-file deploy/k8s/checkov.yaml
echo "k8s overlays valid: $(ls deploy/k8s/overlays | tr '\n' ' ')"
