# The GPU training image: the GPU stack of requirements/gpu.txt (torch cu130, unsloth 2026.10.9 with its
# transformers/trl/datasets caps, trl + peft, bitsandbytes) + the package; `llm-platform train run` as entrypoint.
# ON PAPER: linted here (hadolint, checkov, tests/test_deploy_files.py), never built or run (no registry, no GPU on
# the machines that build images here; the image is ~12 GB). Built by `make images-all` /
# `deploy/docker/build.sh training-gpu` where a registry is reachable (context: gpu.txt, the package's wheel, configs).
#
#   BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04   the official CUDA runtime (torch's cu130 wheels bring their
#                                                        own CUDA libraries; the base gives the driver glue and cuDNN)
#   TORCH_INDEX=https://download.pytorch.org/whl/cu130  where torch+cu130 comes from (the stack checked on the H200)
ARG BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
# Ubuntu 24.04's Python 3.12 (pins UNVERIFIED: read from the archive when writing, never installed here; a security
# update moves them: `apt-cache policy python3` in the base). build-essential: sdists in gpu.txt's closure.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3=3.12.3-0ubuntu2 python3-venv=3.12.3-0ubuntu2 python3-dev=3.12.3-0ubuntu2 build-essential=12.10ubuntu1 \
 && rm -rf /var/lib/apt/lists/*
COPY gpu.txt /tmp/gpu.txt
# gpu.txt is resolved by pip (as `make setup STACK=gpu` does), torch from the cu130 index.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r /tmp/gpu.txt
COPY pkg/ /tmp/pkg/
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-index --no-deps /tmp/pkg/llm_platform-*.whl

FROM ${BASE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="llm-platform-training-gpu" \
      org.opencontainers.image.description="llm_platform training on CUDA (trl, peft, unsloth)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The interpreter only (no compiler): triton's kernels are compiled by the CUDA runtime, not gcc.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3=3.12.3-0ubuntu2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /srv/llmp --no-create-home --shell /usr/sbin/nologin llmp \
 && mkdir -p /srv/llmp/runs /srv/llmp/.cache /srv/llmp/data \
 && chown -R llmp:llmp /srv/llmp/runs /srv/llmp/.cache /srv/llmp/data
COPY --from=builder /opt/venv /opt/venv
COPY configs/ /srv/llmp/configs/
COPY settings.ini /srv/llmp/
ENV PATH=/opt/venv/bin:$PATH \
    LLM_PLATFORM_HOME=/srv/llmp \
    LLM_PLATFORM_CACHE=/srv/llmp/.cache \
    HF_HOME=/srv/llmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /srv/llmp
USER 10001:10001
VOLUME ["/srv/llmp/runs", "/srv/llmp/data"]
# A batch job: no port, no HEALTHCHECK (its exit code is its health; Kubernetes Jobs / torchrun watch it).
HEALTHCHECK NONE
ENTRYPOINT ["llm-platform", "train", "run"]
CMD ["--config", "configs/pipelines/tiny.yaml", "--train-config", "configs/training/tiny.yaml"]
