#!/usr/bin/env bash
# Blue-green switch, rollback and status of a served model (llm_platform.deploy.bluegreen, `llm-platform deploy`).
#   deploy/scripts/bluegreen.sh switch blue|green [--backend local|kubernetes] [--set key=value ...]
#   deploy/scripts/bluegreen.sh rollback          [--backend ...]
#   deploy/scripts/bluegreen.sh status | plan green
# BLUEGREEN_CONFIG (configs/deploy/bluegreen.yaml). A switch checks the new track (ready, serving probe, the gate's
# quality probe when configured) and moves traffic only when every check passes; on a failed check it prints why,
# exits 1 and nothing moves. Each step is printed as it happens.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
cmd=${1:-}; shift || true
case "$cmd" in
  switch|rollback|status|plan) ;;
  *) sed -n '2,8p' "$0"; exit 2;;
esac
echo "+ llm-platform deploy $cmd $* --config ${BLUEGREEN_CONFIG:-configs/deploy/bluegreen.yaml}"
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} exec "$PY" -m llm_platform.cli deploy "$cmd" "$@" \
  --config "${BLUEGREEN_CONFIG:-configs/deploy/bluegreen.yaml}"
