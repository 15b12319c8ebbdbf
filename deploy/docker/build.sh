#!/usr/bin/env bash
# Build an image of deploy/docker/: assemble its context under .cache/images/<name>/, then `podman build`.
#   deploy/docker/build.sh serving-cpu      (what `make images` runs; BASE=python:3.11-slim-bookworm elsewhere)
#   deploy/docker/build.sh ops              (Redis, Prometheus, Alertmanager from Debian: compose without a registry)
#   deploy/docker/build.sh mlflow           (the MLflow server: wheels of requirements/mlflow.lock, as serving's)
# The context holds only what the image needs, pinned: wheels of requirements/serving.lock fetched by the
# host's pip (its cache and indexes: the build itself needs no network), the package's wheel, llama-server
# from `llm-platform llamacpp build` (built once per CPU, cached under ~/.cache/llm_platform/llama.cpp),
# the serving and safety configs and the entrypoint.
#   deploy/docker/build.sh serving-gpu|training-gpu|pipeline   (`make images-all`; ON PAPER: they need a registry for
#     their bases and the package indexes at build time, so the build has the network; DRY_RUN=1 prints the
#     commands instead, which is what `make images-all` does where no registry answers)
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${1:-serving-cpu}
PY=${PY:-.venv/bin/python}
BASE=${BASE:-localhost/llm-platform-base:bookworm}
VERSION=$(sed -n 's/^version *= *//p' settings.ini)
TAG=${TAG:-localhost/llm-platform-$NAME:$VERSION}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/docker/containers.conf}
QUIET_PIP() { grep -v "^WARNING: Location" || true; }
case "$NAME" in
  serving-gpu|training-gpu|pipeline)
    # Default bases: the official ones named in each Dockerfile (ARG BASE); BASE overrides only when set for them.
    CTX=.cache/images/$NAME
    RUN=(); [ -n "${DRY_RUN:-}" ] && RUN=(echo "  ")
    "${RUN[@]}" rm -rf "$CTX"
    "${RUN[@]}" mkdir -p "$CTX/pkg"
    "${RUN[@]}" env SOURCE_DATE_EPOCH=315532800 "$PY" -m pip wheel -q --no-deps -w "$CTX/pkg" .
    "${RUN[@]}" cp -r configs settings.ini "$CTX/"
    case "$NAME" in
      serving-gpu)  "${RUN[@]}" cp requirements/serving.lock deploy/docker/entrypoint.py "$CTX/" ;;
      training-gpu) "${RUN[@]}" cp requirements/gpu.txt "$CTX/" ;;
      pipeline)     "${RUN[@]}" cp -r requirements/cpu.lock pipelines "$CTX/" ;;
    esac
    BASE_ARG=(); [ -n "${GPU_BASE:-}" ] && BASE_ARG=(--build-arg "BASE=$GPU_BASE")
    "${RUN[@]}" podman build --format docker --network host "${BASE_ARG[@]}" --build-arg VERSION="$VERSION" \
      -f "deploy/docker/$NAME.Dockerfile" -t "$TAG" "$CTX"
    exit 0 ;;
  serving-cpu|ops|mlflow) ;;
  *) echo "[images] unknown image $NAME (have: serving-cpu, ops, mlflow, serving-gpu, training-gpu, pipeline)"; exit 2 ;;
esac
if [ "$BASE" = localhost/llm-platform-base:bookworm ] && ! podman image exists "$BASE"; then
  deploy/docker/base.sh
fi
t0=$(date +%s)
if [ "$NAME" = ops ]; then      # Debian packages: apt needs the network (host networking: no bridge here)
  CTX=.cache/images/ops; mkdir -p "$CTX"
  podman build --format docker --network host --build-arg BASE="$BASE" -f deploy/docker/ops.Dockerfile -t "$TAG" "$CTX"
  echo "[images] $TAG: $(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}') in $(( $(date +%s) - t0 )) s"
  exit 0
fi
CTX=.cache/images/$NAME
LOCK=${NAME%-cpu}.lock                # serving.lock, mlflow.lock
# The wheels stay between builds while the lock is unchanged (pip skips what is there); the rest is rebuilt.
cmp -s "requirements/$LOCK" "$CTX/$LOCK" || rm -rf "$CTX/wheels"
mkdir -p "$CTX/wheels"
$PY deploy/docker/image_locks.py --check "${LOCK%.lock}"
$PY -m pip download -q --no-deps -r "requirements/$LOCK" -d "$CTX/wheels" 2>&1 | QUIET_PIP
cp "requirements/$LOCK" "$CTX/$LOCK"
if [ "$NAME" = serving-cpu ]; then     # + the package, llama-server, the configs, the entrypoint
  rm -rf "$CTX/pkg" "$CTX/llama.cpp" "$CTX/configs"
  mkdir -p "$CTX/pkg" "$CTX/llama.cpp/bin" "$CTX/configs/serving" "$CTX/configs/safety"
  # Fixed zip timestamps: the same sources give the same wheel, so podman's layer cache holds across builds.
  SOURCE_DATE_EPOCH=315532800 $PY -m pip wheel -q --no-deps -w "$CTX/pkg" . 2>&1 | QUIET_PIP
  SERVER=$($PY -c "from llm_platform.llamacpp import find_tool; print(find_tool('llama-server'))") \
    || { echo "[images] build llama.cpp first: make llamacpp"; exit 1; }
  cp "$SERVER" "$CTX/llama.cpp/bin/"
  # Shared libraries beyond glibc and libstdc++ (which every Debian base has) travel with the binary.
  ldd "$SERVER" | awk '$3 ~ /^\// {print $3}' | grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' \
    | xargs -r cp -L -t "$CTX/llama.cpp/bin/" || true
  cp configs/serving/gateway.yaml "$CTX/configs/serving/"
  cp configs/safety/*.yaml "$CTX/configs/safety/"
  cp settings.ini deploy/docker/entrypoint.py "$CTX/"
fi
echo "[images] context $CTX: $(du -sh "$CTX" | cut -f1) in $(( $(date +%s) - t0 )) s; building $TAG from $BASE"
podman build --format docker --network none --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" \
  -f deploy/docker/$NAME.Dockerfile -t "$TAG" "$CTX"
echo "[images] $TAG: $(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}') in $(( $(date +%s) - t0 )) s"
