#!/usr/bin/env bash
# Installs the offline Terraform checkers once, pinned, into .cache/tools/ (never into .venv):
#   hcl2     python-hcl2 7.3.1 (MIT), pip --target .cache/tools/hcl2/lib: tests/test_deploy_terraform.py parses the .tf files
#   checkov  checkov 3.3.30 (Apache-2.0) in its own venv (the same copy and stamp deploy/k8s/tools.sh makes)
# Idempotent (a stamp file names the version). Prints what it runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${LLMP_TOOLS_DIR:-$ROOT/.cache/tools}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
HCL2_VERSION=7.3.1
CHECKOV_VERSION=3.3.30
stamp_ok() { [[ -f "$1/.version" && "$(cat "$1/.version")" == "$2" ]]; }
run() { echo "+ $*" >&2; "$@"; }

d="$TOOLS/hcl2"
if ! stamp_ok "$d" "$HCL2_VERSION"; then
  rm -rf "$d"
  # lark and regex, its dependencies, are in the project's lock
  run "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$d/lib" "python-hcl2==$HCL2_VERSION"
  echo "$HCL2_VERSION" > "$d/.version"
fi
d="$TOOLS/checkov"
if ! stamp_ok "$d" "$CHECKOV_VERSION" && ! "$d/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  rm -rf "$d"
  run python3 -m venv "$d"
  run "$d/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  echo "$CHECKOV_VERSION" > "$d/.version"
fi
echo "terraform tools ready in $TOOLS: python-hcl2 $HCL2_VERSION, checkov $CHECKOV_VERSION" >&2
