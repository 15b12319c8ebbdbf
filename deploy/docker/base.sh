#!/usr/bin/env bash
# The local base image localhost/llm-platform-base:bookworm: Debian 12 (minbase) + python3, made with
# debootstrap and `podman import`, for machines that reach no image registry. Built once: skipped when
# the image exists (FORCE=1 rebuilds). Needs root (debootstrap), podman and debootstrap (Debian packages).
#   CONTAINERS_CONF=deploy/docker/containers.conf deploy/docker/base.sh
# Elsewhere, build the images FROM python:3.11-slim-bookworm instead (BASE=... in `make images`).
set -euo pipefail
IMAGE=${BASE_IMAGE:-localhost/llm-platform-base:bookworm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}
if [ -z "${FORCE:-}" ] && podman image exists "$IMAGE"; then
  echo "[base] $IMAGE exists (FORCE=1 rebuilds)"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "[base] debootstrap needs root: sudo $0"; exit 1; }
# The machine's own Debian mirror (deb822 sources or sources.list), else deb.debian.org.
MIRROR=${DEBIAN_MIRROR:-$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -oE 'https?://[^ ]+' | head -1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$(mktemp -d /var/tmp/llmp-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
t0=$(date +%s)
echo "[base] debootstrap --variant=minbase bookworm from $MIRROR"
# python3 (3.11) with venv and pip for the build stages; ca-certificates for pip's HTTPS; tini is not
# needed (the entrypoint is the supervisor and handles signals itself).
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
  || { tail -20 "$ROOT.log"; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
# apt inside later builds: the same mirror and the security suite; no caches in the image.
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  "$MIRROR" "$MIRROR" >"$ROOT/etc/apt/sources.list"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | podman import -q --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "[base] $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}') in $(( $(date +%s) - t0 )) s"
