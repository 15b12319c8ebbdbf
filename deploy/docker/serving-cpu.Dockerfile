# The CPU serving image: llama.cpp's llama-server + the llm_platform gateway, one supervisor in front.
# Build it with `make images` (deploy/docker/build.sh assembles the context: wheels pinned by
# requirements/serving.lock, the package's wheel, the llama-server binary `llm-platform llamacpp build` made,
# the configs and the entrypoint), never from the repository root.
#
#   BASE=localhost/llm-platform-base:bookworm   (default) debootstrap'ed by deploy/docker/base.sh: no registry needed
#   BASE=python:3.11-slim-bookworm              where a registry is reachable (the same Debian, Python 3.11)
#
# The build installs from the context only (pip --no-index --no-deps): no network, every version pinned.
# HEALTHCHECK needs the docker image format (`podman build --format docker`; OCI images drop it).
ARG BASE=localhost/llm-platform-base:bookworm

FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY wheels/ /tmp/wheels/
COPY serving.lock /tmp/serving.lock
# --no-deps: serving.lock is the whole closure (a subset of cpu.lock, checked by tests/test_deploy_container.py).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels --no-deps -r /tmp/serving.lock \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib >/dev/null
# The package last, in its own layer: a code change rebuilds seconds, not the dependencies.
COPY pkg/ /tmp/pkg/
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-index --no-deps /tmp/pkg/llm_platform-*.whl \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3*/site-packages/llm_platform >/dev/null

FROM ${BASE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="llm-platform-serving-cpu" \
      org.opencontainers.image.description="llama.cpp llama-server + llm_platform gateway (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# One unprivileged user owns only what the server writes (runs/: logs, audit, key store, manager state).
RUN useradd --system --uid 10001 --user-group --home-dir /srv/llmp --no-create-home --shell /usr/sbin/nologin llmp \
 && mkdir -p /srv/llmp/runs /srv/llmp/.cache \
 && chown -R llmp:llmp /srv/llmp/runs /srv/llmp/.cache
COPY --from=builder /opt/venv /opt/venv
# llama-server built for this CPU family by `llm-platform llamacpp build` (static ggml; needs libstdc++ only).
COPY llama.cpp/ /opt/llama.cpp/
COPY configs/ /srv/llmp/configs/
COPY settings.ini entrypoint.py /srv/llmp/
ENV PATH=/opt/venv/bin:$PATH \
    LLM_PLATFORM_HOME=/srv/llmp \
    LLM_PLATFORM_LLAMACPP=/opt/llama.cpp \
    LLM_PLATFORM_CACHE=/srv/llmp/.cache \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMP_HOST=0.0.0.0 \
    LLMP_PORT=8080 \
    LLMP_MODEL_PORT=8000
WORKDIR /srv/llmp
USER 10001:10001
VOLUME ["/srv/llmp/runs"]
EXPOSE 8080
# Healthy = the gateway answers /health with status ok: its store answers and every model has a healthy replica.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import json,os,sys,urllib.request as u; sys.exit(json.load(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LLMP_PORT', '8080'), timeout=2))['status'] != 'ok')"]
# The entry process is the supervisor: SIGTERM stops the gateway, then llama-server, and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python3", "/srv/llmp/entrypoint.py"]
CMD []
