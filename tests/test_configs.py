"""Every YAML under configs/ validates against its typed model (torchtune-style config test)."""
from pathlib import Path

import pytest

from llm_platform.config import ConfigError, PipelineConfig, config_kind, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert {p.parent.name for p in CONFIGS} >= {"pipelines", "models", "serving", "ui", "training"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_validates(path):
    kind = config_kind(path)
    assert kind, f"{path}: folder has no config model in CONFIG_KINDS"
    cfg = load_config(path)
    assert isinstance(cfg, kind)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_config_documents_its_command(path):
    "Each config opens with a comment that names the command running it."
    head = path.read_text().splitlines()[:6]
    assert head[0].startswith("#") and any("llm-platform" in line or "pytest" in line for line in head), path


def test_demo_pipeline_uses_cpu_safe_serving():
    cfg = load_config("configs/pipelines/demo.yaml")
    assert isinstance(cfg, PipelineConfig)
    assert cfg.serving.cpu.dtype == "float32" and cfg.serving.cpu.kv_cache_space_gib >= 1


def test_bad_override_names_field():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config("configs/pipelines/tiny.yaml", ["train.batch_size=-1"])


def test_training_presets_named_in_the_issue_exist():
    names = {p.name for p in (ROOT / "configs" / "training").glob("*.yaml")}
    assert names >= {"base.yaml", "qwen25_1.5b.yaml", "qwen3_1.7b.yaml", "smollm2_135m.yaml", "tiny.yaml",
                     "distributed.yaml", "hyperparameter_space.yaml"}
