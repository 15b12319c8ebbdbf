"""ONNX export of the tiny model with its KV cache: parity with transformers, cached generation, lm-eval scoring."""
import pytest

from llm_platform.config import load_config
from llm_platform.core import iter_jsonl, resolve_path
from llm_platform.models import prepare_model
from llm_platform.optimize.onnx import (
    OnnxCausalLM,
    OnnxSpec,
    export_onnx,
    onnx_generator,
    onnx_lm_eval,
    quantize_onnx,
    run_onnx,
)
from llm_platform.optimize.variant import measure_speed

PROMPTS = ["Hello", "Give me the Nimbus Notes help email.", "What is 2+2?"]


@pytest.fixture(scope="module")
def tiny():
    return prepare_model(load_config("configs/models/tiny.yaml"))


@pytest.fixture(scope="module")
def variants(tiny, tmp_path_factory):
    "The fp32 export and its int8 copy, each with parity against transformers (one export for the module)."
    texts = [o["text"] for _, o in iter_jsonl(resolve_path("data/eval/heldout.jsonl"))][:3]
    spec = OnnxSpec(parity_texts=3, parity_prompts=3, max_new_tokens=8, threads=2, int8_recipe="dynamic")
    return {v.name: v for v in run_onnx(spec, tiny, tmp_path_factory.mktemp("onnx"), texts, PROMPTS)}


def test_export_and_parity(variants):
    fp32, int8 = variants["onnx-fp32"], variants["onnx-int8-dynamic"]
    assert (fp32.technique, fp32.engine) == ("onnx", "onnxruntime")
    assert int8.size_bytes < fp32.size_bytes / 2
    assert fp32.facts["parity"]["max_abs_logit_diff"] < 1e-4 and fp32.facts["parity"]["greedy_match"] == 1.0
    p8 = int8.facts["parity"]                       # reported, not required to match: quantization changes logits
    assert 0 < p8["max_abs_logit_diff"] < 1.0 and 0 <= p8["greedy_match"] <= 1


def test_cached_generation_equals_uncached_and_transformers(tiny, variants):
    import torch
    from transformers import AutoModelForCausalLM
    lm = OnnxCausalLM(variants["onnx-fp32"].path, threads=2)
    cached = lm.generate(PROMPTS, 10, eos_stop=False)
    assert cached == lm.generate(PROMPTS, 10, eos_stop=False, use_cache=False)
    assert cached[1] == lm.generate(PROMPTS[1:2], 10, eos_stop=False)[0]           # left padding changes nothing
    ids, mask = lm.pad(PROMPTS)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    ref = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
                         max_new_tokens=10, min_new_tokens=10, pad_token_id=lm.pad_id)
    assert cached == ref[:, ids.shape[1]:].tolist()
    assert lm.logits(ids[:1]).shape == (1, ids.shape[1], model.config.vocab_size)
    speed = measure_speed(onnx_generator(variants["onnx-int8-dynamic"].path, threads=2), PROMPTS, clients=(1, 2),
                          max_new_tokens=4, repeats=1)
    assert speed["tok_per_s_c1"] > 0 and speed["tok_per_s_c2"] > 0


def test_lm_eval_matches_checkpoint(tiny, variants):
    from lm_eval.models.huggingface import HFLM

    from llm_platform.evaluation.harness import SuitesConfig, evaluate_with
    suites, cfg = ["golden", "heldout_perplexity"], SuitesConfig()
    onnx = evaluate_with(onnx_lm_eval(variants["onnx-fp32"].path), suites, cfg, limit=3)
    hf = HFLM(pretrained=str(tiny), dtype="float32", device="cpu", batch_size=cfg.batch_size)   # as _run_checkpoint
    ref = {(r["suite"], r["item_id"], r["metric"]): r["value"] for r in evaluate_with(hf, suites, cfg, limit=3)}
    assert len(onnx) == len(ref) == 6
    for r in onnx:
        assert r["value"] == pytest.approx(ref[(r["suite"], r["item_id"], r["metric"])], abs=1e-4), r


def test_blockwise_int8_runs_the_same_graph(variants, tmp_path):
    fp32 = OnnxCausalLM(variants["onnx-fp32"].path, threads=2)
    block = OnnxCausalLM(quantize_onnx(fp32.path, tmp_path / "blockwise", "blockwise").path, threads=2)
    ids, _ = fp32.pad(PROMPTS)
    assert 0 < abs(block.logits(ids) - fp32.logits(ids)).max() < 0.1     # tiny model: small weights, small error
    with pytest.raises(ValueError, match="int4"):
        quantize_onnx(fp32.path, tmp_path / "bad", "int4")


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        OnnxCausalLM(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        export_onnx(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="int9"):
        OnnxSpec.model_validate({"int9": True})
