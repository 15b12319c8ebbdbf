"""Pruning on the tiny random Llama: every method reaches its sparsity, 2:4 holds in every group,
Wanda is activation-aware, structured pruning shrinks and reloads, recovery lowers the held-out
loss and keeps the zeros, and bad specs fail with a message that names the field."""
import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_platform.config import load_config
from llm_platform.core import resolve_path
from llm_platform.data.chat import ChatFormatter, read_jsonl
from llm_platform.models import prepare_model
from llm_platform.optimize.prune import (
    PruneSpec,
    block_linears,
    magnitude_mask,
    prune_model,
    recover,
    run_prune,
    wanda_mask,
)
from llm_platform.optimize.variant import weights_bytes


@pytest.fixture(scope="module")
def tiny():
    "The tiny random Llama and tokenized sample chats (40 train, 8 held out)."
    torch.set_num_threads(1)
    path = prepare_model(load_config("configs/models/tiny.yaml"))
    chats = [r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))[:48]]
    rows = ChatFormatter(AutoTokenizer.from_pretrained(path), 256).format_batch(chats)
    return {"path": path, "train": rows[:40], "val": rows[40:]}


def _linears(path) -> dict:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, {n: m.weight.detach() for n, m in block_linears(model).items()}


@pytest.mark.parametrize("method,sparsity", [("magnitude", 0.5), ("magnitude", 0.3), ("wanda", 0.5), ("2:4", 0.5)])
def test_each_method_reaches_its_sparsity(tiny, tmp_path, method, sparsity):
    v = prune_model(tiny["path"], tmp_path, PruneSpec(method=method, sparsity=sparsity, calibration_rows=8), tiny["train"])
    model, layers = _linears(v.path)
    parent, _ = _linears(tiny["path"])
    assert len(layers) == 14                                   # 2 blocks x (q, k, v, o, gate, up, down)
    for name, w in layers.items():
        assert abs(float((w == 0).float().mean()) - sparsity) < 0.01, name
        if method == "2:4":
            assert ((w.view(w.shape[0], -1, 4) == 0).sum(-1) >= 2).all(), name
    assert torch.equal(model.model.embed_tokens.weight, parent.model.embed_tokens.weight)   # never the embeddings
    assert abs(v.facts["layers_sparsity"] - sparsity) < 0.01 and 0 < v.facts["sparsity"] < v.facts["layers_sparsity"]
    assert v.name == f"prune-{method.replace('2:4', '2of4')}-{round(sparsity * 100)}" and v.technique == "prune"


def test_wanda_keeps_the_weights_of_loud_inputs():
    "On inputs with a few outlier features (as LLM activations have), Wanda's pruned layer is closer to the dense one."
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 64, generator=g)
    x = torch.randn(512, 64, generator=g)
    x[:, :4] *= 20                                              # four loud features
    err = {name: float((x @ (w * mask).T - x @ w.T).norm())
           for name, mask in (("magnitude", magnitude_mask(w, 0.5)), ("wanda", wanda_mask(w, x.norm(dim=0), 0.5)))}
    assert err["wanda"] < 0.5 * err["magnitude"], err


def test_wanda_and_magnitude_differ_on_the_model(tiny, tmp_path):
    zeros = {}
    for method in ("magnitude", "wanda"):
        v = prune_model(tiny["path"], tmp_path / method, PruneSpec(method=method, calibration_rows=8), tiny["train"],
                        tiny["val"])
        zeros[method] = {n: w == 0 for n, w in _linears(v.path)[1].items()}
        assert abs(v.facts["heldout_loss_pruned"] - v.facts["heldout_loss_before"]) < 1.0   # 50% of a random model
    overlap = sum(int((zeros["magnitude"][n] & zeros["wanda"][n]).sum()) for n in zeros["wanda"])
    assert overlap < 0.95 * sum(int(z.sum()) for z in zeros["wanda"].values())


def test_structured_shrinks_the_folder_and_reloads(tiny, tmp_path):
    v = prune_model(tiny["path"], tmp_path, PruneSpec(method="structured", sparsity=0.25, calibration_rows=8),
                    tiny["train"])
    model = AutoModelForCausalLM.from_pretrained(v.path)
    assert model.config.intermediate_size == 192 and model.model.layers[0].mlp.down_proj.weight.shape == (128, 192)
    saved = 2 * 3 * 128 * 64 * 4                                # 2 layers x 3 projections x 64 channels x fp32
    assert weights_bytes(v.path) <= weights_bytes(tiny["path"]) - saved + 1024
    assert v.facts["params_before"] - v.facts["params"] == 2 * 3 * 128 * 64
    logits = model(input_ids=torch.tensor([tiny["val"][0]["input_ids"]])).logits
    assert torch.isfinite(logits).all()


def test_recovery_lowers_the_loss_and_keeps_the_zeros(tiny, tmp_path):
    spec = PruneSpec(method="wanda", calibration_rows=8, recovery_steps=8, recovery_lr=3e-3)
    pruned = prune_model(tiny["path"], tmp_path / "pruned", spec, tiny["train"], tiny["val"])
    rec = recover(pruned, tmp_path / "rec", spec, tiny["train"], tiny["val"])
    f = rec.facts
    assert f["heldout_loss_recovered"] < f["heldout_loss_pruned"] - 0.05, f
    assert {"heldout_loss_before", "recovery_seconds", "layers_sparsity", "params"} <= set(f)
    before, after = _linears(pruned.path)[1], _linears(rec.path)[1]
    for n in before:
        assert (after[n][before[n] == 0] == 0).all(), n           # the mask survives the dense LoRA merge
        assert not torch.equal(after[n], before[n]), n            # and the kept weights did move


def test_run_prune_names_and_folders(tiny, tmp_path):
    specs = [PruneSpec(method="magnitude", sparsity=0.3, recovery_steps=0),
             PruneSpec(method="structured", sparsity=0.5, calibration_rows=4, recovery_steps=2)]
    vs = run_prune(specs, tiny["path"], tmp_path, tiny["train"], tiny["val"])
    assert [v.name for v in vs] == ["prune-magnitude-30", "prune-structured-50"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prune-magnitude-30", "prune-structured-50"]
    assert vs[0].facts["heldout_loss_before"] == vs[1].facts["heldout_loss_before"]


def test_bad_specs_fail_clearly(tiny, tmp_path):
    with pytest.raises(ValidationError, match="2:4 prunes exactly half"):
        PruneSpec(method="2:4", sparsity=0.7)
    with pytest.raises(ValidationError, match="recovery_step"):
        PruneSpec(method="wanda", recovery_step=3)               # a typo is an unknown key, not a silent default
    with pytest.raises(ValidationError, match="method"):
        PruneSpec(method="random")
    with pytest.raises(ValidationError, match="sparsity"):
        PruneSpec(method="wanda", sparsity=1.0)
    with pytest.raises(ValueError, match="needs calibration rows"):
        prune_model(tiny["path"], tmp_path, PruneSpec(method="wanda"), [])
    with pytest.raises(ValueError, match="same variant name"):
        run_prune([PruneSpec(method="wanda"), PruneSpec(method="wanda", seed=1)], tiny["path"], tmp_path, [], [])
