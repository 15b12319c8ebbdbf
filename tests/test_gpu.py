"""GPU-only paths: run only where torch sees CUDA (skipped in CI, which has no GPU)."""
import pytest


@pytest.mark.gpu
def test_unsloth_backend_selected_on_cuda():
    pytest.importorskip("unsloth")
    from llm_platform.train.sft import select_backend
    assert select_backend("auto") == "unsloth"


@pytest.mark.gpu
def test_vllm_gpu_device_detected():
    from llm_platform.serve.vllm_server import detect_device
    assert detect_device("auto") == "cuda"
