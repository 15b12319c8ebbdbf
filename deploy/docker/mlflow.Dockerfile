# The MLflow tracking server (experiments, runs, the model registry the gate promotes in), at the version
# requirements/cpu.lock pins, for machines that reach no image registry (the compose file's default is the
# upstream ghcr.io/mlflow/mlflow image of the same version). Build it with `deploy/docker/build.sh mlflow`
# (`make images`): the context holds the wheels of requirements/mlflow.lock, fetched by the host's pip.
#
#   BASE=localhost/llm-platform-base:bookworm   (default) debootstrap'ed by deploy/docker/base.sh: no registry needed
#   BASE=python:3.11-slim-bookworm              where a registry is reachable
#
# The build installs from the context only (pip --no-index --no-deps): no network, every version pinned.
ARG BASE=localhost/llm-platform-base:bookworm

FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY wheels/ /tmp/wheels/
COPY mlflow.lock /tmp/mlflow.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels --no-deps -r /tmp/mlflow.lock \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools

FROM ${BASE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="llm-platform-mlflow" \
      org.opencontainers.image.description="MLflow tracking server and model registry (the version llm_platform pins)" \
      org.opencontainers.image.version="${VERSION}"
# One unprivileged user owns the store: the SQLite database and the artifacts under /mlflow.
RUN useradd --system --uid 10003 --user-group --home-dir /mlflow --no-create-home --shell /usr/sbin/nologin mlflow \
 && mkdir -p /mlflow/artifacts \
 && chown -R mlflow:mlflow /mlflow
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_PORT=5000
# MLFLOW_PORT is what the health check asks; a compose file that moves the port sets both (see docker-compose.full.yml).
WORKDIR /mlflow
USER 10003:10003
VOLUME ["/mlflow"]
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os,sys,urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MLFLOW_PORT', '5000'), timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["mlflow", "server", "--host", "127.0.0.1", "--port", "5000", "--backend-store-uri", "sqlite:////mlflow/mlflow.db", \
     "--artifacts-destination", "/mlflow/artifacts"]
