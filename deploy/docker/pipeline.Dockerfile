# The pipeline image (papermill runner): the CPU stack of requirements/cpu.lock installed --no-deps (as `make setup`
# does), the package, pipelines/ (the step notebooks) and configs/. The Kubernetes Jobs of deploy/k8s/base/pipeline-jobs.yaml
# run it as `llm-platform pipeline run --config ... --set steps=[...]` (one step per Job); with
# `mlflow server --host 0.0.0.0 --backend-store-uri sqlite:////srv/llmp/mlflow/mlflow.db ...` as its command it is
# also an MLflow server (cpu.lock pins mlflow 3.17.2, the version of the compose file's upstream MLflow image).
# ON PAPER: linted here (hadolint, checkov, tests/test_deploy_files.py), not built (cpu.lock's torch+cpu and vLLM
# need PyPI and the PyTorch index at build time: no registry or index from the image builds here; ~4.5 GB).
# Built by `make images-all` / `deploy/docker/build.sh pipeline` (context: cpu.lock, the package's wheel,
# pipelines/, configs/, settings.ini).
#
#   BASE=python:3.11-slim-bookworm   the official Python base (Python 3.11: the interpreter cpu.lock was resolved on)
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY cpu.lock /tmp/cpu.lock
# The whole closure pinned: --no-deps, as `make setup`; torch==2.13.0+cpu from the PyTorch CPU index.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --extra-index-url "${TORCH_INDEX}" -r /tmp/cpu.lock
COPY pkg/ /tmp/pkg/
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-index --no-deps /tmp/pkg/llm_platform-*.whl \
 && /opt/venv/bin/python -m ipykernel install --sys-prefix --name llm-platform --display-name "llm_platform (image)" >/dev/null

FROM ${BASE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="llm-platform-pipeline" \
      org.opencontainers.image.description="llm_platform pipeline steps (papermill) and MLflow server, CPU" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN useradd --system --uid 10001 --user-group --home-dir /srv/llmp --no-create-home --shell /usr/sbin/nologin llmp \
 && mkdir -p /srv/llmp/runs /srv/llmp/.cache /srv/llmp/data /srv/llmp/mlflow \
 && chown -R llmp:llmp /srv/llmp/runs /srv/llmp/.cache /srv/llmp/data /srv/llmp/mlflow
COPY --from=builder /opt/venv /opt/venv
COPY pipelines/ /srv/llmp/pipelines/
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
VOLUME ["/srv/llmp/runs", "/srv/llmp/data", "/srv/llmp/mlflow"]
EXPOSE 5000
# A pipeline step is a batch job (its exit code is its health); as an MLflow server its compose service or
# Deployment probes GET /health on its port. One image, two roles: no image-level check fits both.
HEALTHCHECK NONE
CMD ["llm-platform", "pipeline", "run", "--config", "configs/pipelines/tiny.yaml"]
