# Redis, Prometheus and Alertmanager from Debian bookworm, in one small image for machines that reach no image
# registry (the compose file's upstream images, redis / prom/prometheus / prom/alertmanager, cannot be pulled
# there). Used by tests/test_deploy_compose.py through deploy/compose/docker-compose.local.yml; the same
# versions as the Debian packages the monitoring tests run. Built by `deploy/docker/build.sh ops`.
ARG BASE=localhost/llm-platform-base:bookworm
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      redis-server=5:7.0.15-1~deb12u7 redis-tools=5:7.0.15-1~deb12u7 \
      prometheus=2.42.0+ds-5+deb12u1 prometheus-alertmanager=0.25.0-1+b4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --home-dir /var/lib/ops --create-home --shell /usr/sbin/nologin ops \
 && mkdir -p /prometheus /alertmanager /data \
 && chown ops:ops /prometheus /alertmanager /data
USER 10002:10002
WORKDIR /var/lib/ops
CMD ["redis-server", "--bind", "127.0.0.1", "--save", ""]
