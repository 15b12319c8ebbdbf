"""Shared fixtures: one tiny pipeline run and one vLLM server per test session.

Everything here is real: the papermill pipeline runs the step notebooks on the tiny random
model, vLLM serves the merged result, and the browser test drives Chromium.
"""
import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LLM_PLATFORM_HOME", str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def tiny_run(runs_dir):
    "A whole pipeline run (data -> train -> evaluate -> merge) on the tiny model, through papermill."
    from llm_platform.pipeline import run_pipeline
    overrides = [f"runs_dir={runs_dir}", f"mlflow.tracking_uri=sqlite:///{runs_dir}/mlflow.db"]
    info = run_pipeline("configs/pipelines/tiny.yaml", overrides, run_id=f"tiny-{uuid.uuid4().hex[:6]}",
                        progress=False, use_cache=False)      # every step really runs (and is indexed for reuse)
    return {**info, "run_dir": runs_dir / info["run_id"], "runs_dir": runs_dir}


@pytest.fixture(scope="session")
def vllm_server(tiny_run):
    "vLLM's OpenAI server on the tiny run's merged model (eager mode, ~40 s to start)."
    from llm_platform.config import load_config
    from llm_platform.serve.vllm_server import VLLMServer
    cfg = load_config("configs/pipelines/tiny.yaml").serving
    with VLLMServer(tiny_run["model_dir"], cfg, log_path=tiny_run["runs_dir"] / "vllm.log") as server:
        yield server


@pytest.fixture(scope="session")
def redis_server():
    "One real redis-server for the session, on a unix socket in a short temp folder."
    from llm_platform.serve.store import RedisServer
    with RedisServer() as server:
        yield server
