#!/usr/bin/env bash
# Deploy an environment to Kubernetes: render its overlay, apply it, then switch the model servers' traffic
# blue-green to the new track once it is ready and passes the probes.
#   deploy/scripts/deploy.sh development|staging|production [TRACK]
# TRACK: the track the new release went to (default: the one not active now, from `llm-platform deploy status`).
# Without a cluster (`kubectl cluster-info` fails) nothing is applied: it prints exactly what it would run and exits 0
# (DRY=1 forces that; STRICT=1 makes a missing cluster an error, exit 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV=${1:?usage: deploy/scripts/deploy.sh development|staging|production [TRACK]}
case "$ENV" in development|staging|production) ;; *) echo "environment: development, staging or production, not '$ENV'" >&2; exit 2;; esac
PY=${PY:-.venv/bin/python}
KUBECTL=${KUBECTL:-kubectl}
OVERLAY=deploy/k8s/overlays/$ENV
OUT=${OUT:-runs/deploy/$ENV.yaml}
CFG=${BLUEGREEN_CONFIG:-configs/deploy/bluegreen.yaml}
llmp() { PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PY" -m llm_platform.cli "$@"; }
TRACK=${2:-$(llmp deploy status --config "$CFG" --backend kubernetes --json 2>/dev/null \
  | "$PY" -c "import json,sys; s=json.load(sys.stdin); a=(s.get('cluster') or {}).get('active') or s.get('active'); print({'blue':'green','green':'blue'}.get(a,'blue'))" || echo blue)}

# The package's renderer (`llm-platform deploy render --env ENV`: the overlay plus configs/environments/ENV.yaml)
# when this checkout has it, else kustomize on the overlay.
if llmp deploy render --help >/dev/null 2>&1; then RENDER=(llm-platform deploy render --env "$ENV"); RENDER_RUN=(llmp deploy render --env "$ENV")
else RENDER=("$KUBECTL" kustomize "$OVERLAY"); RENDER_RUN=("${RENDER[@]}"); fi
APPLY=("$KUBECTL" apply --server-side -f "$OUT")
SWITCH=(llm-platform deploy switch "$TRACK" --backend kubernetes --config "$CFG")
echo "[deploy $ENV] 1. render  : ${RENDER[*]} > $OUT"
echo "[deploy $ENV] 2. apply   : ${APPLY[*]}"
echo "[deploy $ENV] 3. switch  : ${SWITCH[*]}  (after: rollout status, serving probe through a port-forward, then the selector patch)"
mkdir -p "$(dirname "$OUT")"
if [ -d "$OVERLAY" ] && command -v "$KUBECTL" >/dev/null; then
  "${RENDER_RUN[@]}" > "$OUT"; echo "[deploy $ENV] rendered $(grep -c '^kind:' "$OUT") objects into $OUT"
else
  echo "[deploy $ENV] cannot render: $( [ -d "$OVERLAY" ] || echo "no $OVERLAY" ) $(command -v "$KUBECTL" >/dev/null || echo "no $KUBECTL")"
fi
if [ -n "${DRY:-}" ] || ! "$KUBECTL" cluster-info --request-timeout=5s >/dev/null 2>&1; then
  echo "[deploy $ENV] no Kubernetes cluster answers ($KUBECTL cluster-info): nothing applied, nothing switched. On a cluster it runs:"
  echo "  ${RENDER[*]} > $OUT"
  echo "  ${APPLY[*]}"
  llmp deploy plan "$TRACK" --config "$CFG" | sed 's/^/  /'
  [ -z "${STRICT:-}" ] || exit 1
  exit 0
fi
echo "+ ${APPLY[*]}"; "${APPLY[@]}"
llmp deploy switch "$TRACK" --backend kubernetes --config "$CFG"
