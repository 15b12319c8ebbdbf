"""Distillation on the tiny model: a 1-layer student cut from a 2-layer teacher first taught the
sample chats for ten steps (the module's own loop with alpha 0: cross-entropy only). The random
tiny model itself is too weak a teacher: a 1-layer student already matches it."""
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from llm_platform.optimize.distil import DistilSpec, _train, make_student, run_distil
from llm_platform.optimize.variant import count_params, weights_bytes


def _load(path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    "The tiny model after 10 cross-entropy steps on the sample chats, and the chats as tokenized rows."
    from transformers import AutoTokenizer

    from llm_platform.config import load_config
    from llm_platform.core import resolve_path
    from llm_platform.data.chat import ChatFormatter, read_jsonl
    from llm_platform.models import prepare_model
    tiny = prepare_model(load_config("configs/models/tiny.yaml"))
    tok = AutoTokenizer.from_pretrained(tiny)
    chats = [r["messages"] for r in read_jsonl(resolve_path("data/sample/chats.jsonl"))]
    rows = [r for r in ChatFormatter(tok, 256).format_batch(chats) if isinstance(r, dict)]
    model = _load(tiny)
    _train(model, _load(tiny), rows[:-8], DistilSpec(keep_layers=1, alpha=0.0, steps=10, lr=3e-3))  # alpha 0: CE only
    out = tmp_path_factory.mktemp("distil") / "teacher"
    model.eval().save_pretrained(out); tok.save_pretrained(out)
    return {"dir": out, "train": rows[:-8], "val": rows[-8:]}


def test_student_is_smaller_and_reloads(tiny_teacher, tmp_path):
    teacher = _load(tiny_teacher["dir"])
    path = make_student(tiny_teacher["dir"], tmp_path / "s", [1])
    student = _load(path)
    assert student.config.num_hidden_layers == 1
    assert count_params(student)["params"] < count_params(teacher)["params"]
    assert weights_bytes(path) < weights_bytes(tiny_teacher["dir"])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()   # tied, as the teacher
    assert torch.equal(student.model.layers[0].self_attn.q_proj.weight, teacher.model.layers[1].self_attn.q_proj.weight)
    assert (Path(path) / "tokenizer.json").exists()


def test_distil_brings_the_student_to_its_teacher(tiny_teacher, tmp_path):
    specs = [DistilSpec(keep_layers=1, steps=10, lr=3e-3, batch_size=8, alpha=1.0),
             DistilSpec(keep_layers=[1], steps=1, lr=3e-3, batch_size=8)]
    v, second = run_distil(specs, tiny_teacher["dir"], tmp_path, tiny_teacher["train"], tiny_teacher["val"])
    f = v.facts
    assert (v.name, second.name) == ("distil-1of2", "distil-1of2-2") and second.facts["kept_layers"] == [1]
    assert v.technique == "distil" and v.engine == "transformers" and v.parent == str(tiny_teacher["dir"])
    assert f["student_params"] < f["teacher_params"] and (f["student_layers"], f["teacher_layers"]) == (1, 2)
    assert v.size_bytes == weights_bytes(v.path) < weights_bytes(tiny_teacher["dir"])
    assert f["kd_end"] < f["kd_start"] and f["kd_curve"][-1][1] < f["kd_curve"][0][1], f
    assert f["heldout_loss_after"] < f["heldout_loss_before"], f
    assert _load(v.path).config.num_hidden_layers == 1


@pytest.mark.parametrize("keep, says", [(2, "keep_layers: 2 is not fewer than the teacher's 2 layers"),
                                        ([0, 5], "keep_layers: [5] out of range"),
                                        ([0, 1], "keep_layers: keeps all 2")])
def test_bad_keep_layers_fails_before_training(tiny_teacher, tmp_path, keep, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        run_distil([DistilSpec(keep_layers=1), DistilSpec(keep_layers=keep)], tiny_teacher["dir"], tmp_path,
                   tiny_teacher["train"], tiny_teacher["val"])
    assert not list(tmp_path.iterdir())                   # the valid first spec did not train either


@pytest.mark.parametrize("keep", [0, [], [2, 1], [-1]])
def test_spec_rejects_impossible_layers(keep):
    with pytest.raises(ValidationError, match="keep_layers"):
        DistilSpec(keep_layers=keep)
    with pytest.raises(ValidationError, match="temperature"):
        DistilSpec(keep_layers=1, temperature=0)
    with pytest.raises(ValidationError, match="extra"):
        DistilSpec(keep_layers=1, layers=3)
