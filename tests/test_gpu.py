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


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_training_on_cuda_lowers_loss(method, tmp_path):
    "The CUDA path (unsloth when installed, else trl with bf16) trains the tiny model; which one ran is recorded."
    from transformers import AutoTokenizer

    from llm_platform.config import TrainConfig, load_config
    from llm_platform.core import resolve_path
    from llm_platform.data.chat import ChatFormatter, read_jsonl
    from llm_platform.models import prepare_model
    from llm_platform.train.sft import train_sft
    model = prepare_model(load_config("configs/models/tiny.yaml"))
    tok = AutoTokenizer.from_pretrained(model)
    rows = ChatFormatter(tok, 256).format_batch([r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))])
    m = train_sft(TrainConfig(method=method, max_steps=20, batch_size=8, learning_rate=3e-3, logging_steps=5),
                  model, rows, tmp_path)
    assert m["backend"] in ("unsloth", "trl") and m["last_logged_loss"] < m["first_logged_loss"]
