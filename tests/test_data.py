"""The data capability on real files: planted faults, every input format, streaming, splits, synthesis."""
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from llm_platform.config import DataConfig, DedupConfig
from llm_platform.data.ingest import iter_raw, to_messages
from llm_platform.data.prepare import prepare_dataset
from llm_platform.models import prepare_smollm2_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def chat(q, a="You can do that from Settings, then Export, in the desktop app."):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(prepare_smollm2_tokenizer())


def test_planted_faults_give_exactly_the_expected_rejects(tmp_path, tokenizer):
    lines = [json.dumps(chat("How can I export all of my notes to a PDF file at once?")),          # 1 ok
             '{"messages": [{"role": "user", "content": "hi"}',                                     # 2 broken JSON
             json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}),  # 3
             json.dumps({"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "x"}]}),  # 4
             None,                                                                                  # 5 non-UTF-8
             json.dumps(chat("How can I export all of my notes to a PDF file at once?")),          # 6 exact dup
             json.dumps(chat("Please tell me: how can I export all of my notes to a PDF file at once?")),  # 7 near dup
             json.dumps(chat("word " * 300)),                                                       # 8 too long
             json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),  # 9 order
             json.dumps(chat("Does the app have a dark theme for night work?", "Yes, under Appearance."))]  # 10 ok
    raw = b"".join((line.encode() if line is not None else b'{"messages": "caf\xe9"}') + b"\n" for line in lines)
    src = tmp_path / "faults.jsonl"
    src.write_bytes(raw)
    cfg = DataConfig(path=str(src), max_length=128, val_fraction=0.3, dedup=DedupConfig(near_threshold=0.7))
    s = prepare_dataset(cfg, tokenizer, tmp_path / "out")
    rejects = [json.loads(x) for x in open(tmp_path / "out" / "rejects.jsonl")]
    got = sorted((r["line"], r["check"]) for r in rejects)
    assert got == [(2, "parse"), (3, "schema"), (4, "schema"), (5, "parse"), (6, "exact_duplicate"),
                   (7, "near_duplicate"), (8, "too_long"), (9, "roles")]
    why = {r["line"]: r["reason"] for r in rejects}
    assert "invalid JSON" in why[2] and "robot" in why[3] and "messages.0.content" in why[4]
    assert why[5] == "invalid UTF-8 at byte 17" and f"{src}:1" in why[6] and f"{src}:1" in why[7]
    assert "max_length=128" in why[8] and "expected 'assistant'" in why[9]
    assert all(r["source"] == str(src) and r["raw"] for r in rejects)
    assert s["read"] == 10 and s["valid"] == 2 and s["valid"] + s["rejected"] == s["read"]
    kept = sum(1 for n in ("train", "val") for _ in open(tmp_path / "out" / f"{n}.jsonl"))
    assert kept == 2 == sum(s["splits"].values())


def test_every_format_and_shape_maps_to_the_same_messages(tmp_path):
    sharegpt = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(3)]
    alpaca = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    want = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(3)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sharegpt))
    (tmp_path / "a.json").write_text(json.dumps(alpaca))
    pd.DataFrame(alpaca).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(alpaca).to_parquet(tmp_path / "a.parquet")
    from datasets import Dataset
    Dataset.from_list(sharegpt).save_to_disk(str(tmp_path / "hf"))
    for name in ["s.jsonl", "a.json", "a.csv", "a.parquet", "hf"]:
        got = [to_messages(r.record)["messages"] for r in iter_raw(tmp_path / name)]
        assert got == want, name


def test_ingest_streams_in_flat_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    line = json.dumps(chat("How do I export my notes? " * 20)) + "\n"
    with open(path, "w") as f:
        for _ in range(60_000):
            f.write(line)
    size = path.stat().st_size
    tracemalloc.start()
    n = sum(1 for _ in iter_raw(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 60_000 and size > 40e6
    assert peak < 2e6, f"peak {peak / 1e6:.1f} MB while streaming a {size / 1e6:.0f} MB file"


def test_splits_are_grouped_and_stratified(tmp_path, tokenizer):
    rows = []
    for conv in range(120):
        topic = "billing" if conv % 4 == 0 else "usage"
        for turn in range(2):
            rows.append({**chat(f"Question {turn} of conversation {conv} about {topic} number {conv * 7}",
                                f"Answer {turn} for conversation {conv}, topic {topic}, ref {conv * 13}."),
                         "conversation_id": f"c{conv}", "topic": topic})
    src = tmp_path / "g.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(path=str(src), val_fraction=0.25, test_fraction=0.25, group_by="conversation_id",
                     stratify_by="topic", max_length=256)
    s = prepare_dataset(cfg, tokenizer, tmp_path / "out")
    seen = {}
    for split in ("train", "val", "test"):
        for line in open(tmp_path / "out" / f"{split}.jsonl"):
            r = json.loads(line)
            assert seen.setdefault(r["conversation_id"], split) == split, "a conversation straddles splits"
    assert s["rejected"] == 0 and sum(s["splits"].values()) == 240
    billing_val = sum(1 for c, sp in seen.items() if sp == "val" and int(c[1:]) % 4 == 0)
    assert billing_val == 8          # 25% of the 30 billing conversations, rounded up by whole groups
    again = prepare_dataset(cfg, tokenizer, tmp_path / "again")
    assert again["splits"] == s["splits"]
    assert (tmp_path / "again" / "val.jsonl").read_text() == (tmp_path / "out" / "val.jsonl").read_text()


def test_self_instruct_through_vllm_is_validated_and_deduplicated(vllm_server, tmp_path):
    from openai import OpenAI

    from llm_platform.data.synth import synthesize
    client = OpenAI(base_url=vllm_server.base_url, api_key="none")
    s = synthesize(DataConfig(path="data/sample/chats.jsonl"), tmp_path, client, vllm_server.served_model_name,
                   n_instruct=3, n_augment=10)
    assert s["generated"] == 13 == s["kept"] + s["rejected"]
    kept = [json.loads(x) for x in open(tmp_path / "synth.jsonl")]
    real = {json.dumps(json.loads(x)["messages"]) for x in open(ROOT / "data/sample/chats.jsonl")}
    assert not any(json.dumps(r["messages"]) in real for r in kept)
    assert {r["synthetic"] for r in kept} <= {"self-instruct", "augment"}


def test_cli_validate_names_file_and_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(chat("What is new in version two?")) + "\n{broken\n")
    r = subprocess.run([str(Path(sys.executable).parent / "llm-platform"), "data", "validate", str(src), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert (reject["source"], reject["line"], reject["check"]) == (str(src), 2, "parse")


def _mixed_file(path, n=2400):
    "Conversations with every kind of fault, exact and near duplicates and non-ASCII text, spread over many chunks."
    lines = []
    for i in range(n):
        q = f"How do I {['export', 'share', 'sync', 'lock'][i % 4]} notebook number {i} to {['PDF', 'team', 'phone'][i % 3]}?"
        a = f"Open notebook {i}, then use the menu. Café ünïcode {i}." if i % 7 == 0 else f"Open notebook {i}, then the menu."
        lines.append(json.dumps(chat(q, a), ensure_ascii=i % 2 == 0))
        if i % 97 == 0:
            lines.append('{"messages": [{"role": "user"')                        # broken JSON
        if i % 89 == 0:
            lines.append(json.dumps(chat(q, a)))                                  # exact duplicate
        if i % 83 == 0:
            lines.append(json.dumps(chat("Please, " + q, a)))                     # near duplicate
        if i % 101 == 0:
            lines.append(json.dumps(chat("word " * 300)))                         # too long
    path.write_bytes(b"".join(x.encode() + b"\n" for x in lines) + b'{"messages": "caf\xe9"}\n')


def test_workers_give_byte_identical_results(tmp_path, tokenizer):
    src = tmp_path / "mixed.jsonl"
    _mixed_file(src)
    outs = {}
    for workers in (1, 2):
        cfg = DataConfig(path=str(src), max_length=128, test_fraction=0.1, workers=workers,
                         dedup=DedupConfig(near_threshold=0.7))
        s = prepare_dataset(cfg, tokenizer, tmp_path / f"w{workers}", batch_size=64)
        outs[workers] = s
    s1, s2 = outs[1], outs[2]
    assert {k: v for k, v in s1.items() if k not in ("seconds", "records_per_second", "workers")} == \
           {k: v for k, v in s2.items() if k not in ("seconds", "records_per_second", "workers")}
    assert set(s1["reject_reasons"]) == {"parse", "exact_duplicate", "near_duplicate", "too_long"}, s1
    for name in ["train", "val", "test", "train.tokens", "val.tokens", "test.tokens", "rejects"]:
        a, b = (tmp_path / f"w{w}" / f"{name}.jsonl" for w in (1, 2))
        assert a.read_bytes() == b.read_bytes(), name


def test_fast_tokenizer_path_matches_the_rust_tokenizer(tokenizer):
    import random

    from llm_platform.data.chat import ChatFormatter
    from llm_platform.data.templates import TEMPLATE_VARIANTS, with_template
    rng = random.Random(0)
    bits = ["hello", " world", "It's", "they'll", "12", "3.5", "  ", "\n", "\n\n", " \n", "\t", "!!", "<|im_end|>",
            "don't", "é", "\x01", "\x7f", "'S", "\r\n"]
    alphabet = "abcXYZ019 '\t\n\r\x0b\x0c.,!?-_<>|#"

    def text():
        return "".join(rng.choice(bits) if rng.random() < 0.5 else
                       "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 12)))
    convs = []
    for _ in range(300):
        msgs = [{"role": "system", "content": text()}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            msgs += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        convs.append(msgs)
    for family, kwargs in TEMPLATE_VARIANTS:
        tok = with_template(tokenizer, family)
        fast, rust = ChatFormatter(tok, **kwargs), ChatFormatter(tok, **kwargs)
        rust.bpe = None
        assert repr(fast.encode_batch(convs)) == repr(rust.encode_batch(convs)), family


def test_wrong_language_is_rejected_with_line_and_reason(tmp_path, tokenizer):
    rows = [chat("How do I share a notebook with my whole team?", "Open it, choose Share, then add their emails."),
            chat("Wie teile ich ein Notizbuch mit meinem ganzen Team?", "Öffne es, wähle Teilen und füge ihre Adressen hinzu."),
            chat("Can I get my notes back after deleting them by mistake?", "Yes, from the Trash, for thirty days.")]
    src = tmp_path / "lang.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = DataConfig(path=str(src), language_hook="llm_platform.data.validate:detect_language", languages=["en"])
    s = prepare_dataset(cfg, tokenizer, tmp_path / "out")
    rejects = [json.loads(x) for x in open(tmp_path / "out" / "rejects.jsonl")]
    assert [(r["line"], r["check"]) for r in rejects] == [(2, "language")] and "'de'" in rejects[0]["reason"]
    assert s["valid"] == 2 and s["read"] == 3


def test_language_detector_on_labelled_short_turns():
    from llm_platform.data.validate import detect_language
    rows = [json.loads(x) for x in open(ROOT / "data/sample/languages.jsonl")]
    right = sum(detect_language(r["text"]) == r["lang"] for r in rows)
    assert len({r["lang"] for r in rows}) >= 10 and right / len(rows) >= 0.95, right


def _cli(args, cwd, monkeypatch):
    "`llm-platform ARGS` in-process from `cwd` (outside the checkout: the project is found through LLM_PLATFORM_HOME)."
    from typer.testing import CliRunner

    from llm_platform.cli import app
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("LLM_PLATFORM_HOME", str(ROOT))
    monkeypatch.setenv("COLUMNS", "300")              # rich: no wrapping inside long paths
    r = CliRunner().invoke(app, args)
    return r, " ".join(r.output.split())


def test_cli_paths_are_from_the_current_directory_and_missing_files_read_alike(tmp_path, monkeypatch):
    (tmp_path / "in.jsonl").write_text(json.dumps(chat("Where do I find the sync log?")) + "\n{oops\n")
    r, out = _cli(["data", "validate", "in.jsonl", "--out", "out"], tmp_path, monkeypatch)
    assert r.exit_code == 0, out
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert (reject["source"], reject["line"]) == (str(tmp_path / "in.jsonl"), 2)
    for name in ("gone.jsonl", "gone.csv", "gone.parquet"):
        r, out = _cli(["data", "validate", name, "--out", "out2"], tmp_path, monkeypatch)
        assert r.exit_code == 1 and f"error: {tmp_path / name}: no such data file" in out, out
    r, out = _cli(["data", "prepare", "--set", "data.path=gone.jsonl", "--out", "out3"], tmp_path, monkeypatch)
    assert r.exit_code == 1 and f"{tmp_path / 'gone.jsonl'}: no such data file" in out, out


def test_cli_validate_says_which_checks_did_not_run_and_checks_length_with_model(tmp_path, monkeypatch, tokenizer):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(chat("Short question?")) + "\n" + json.dumps(chat("word " * 200)) + "\n")
    r, out = _cli(["data", "validate", "--help"], tmp_path, monkeypatch)
    assert "--model" in out and "length checks do not run" in out, out
    r, out = _cli(["data", "validate", str(src), "--out", "a", "--set", "data.max_length=64"], tmp_path, monkeypatch)
    assert r.exit_code == 0 and "not checked: chat template and length" in out, out
    assert (tmp_path / "a" / "rejects.jsonl").read_text() == ""
    folder = prepare_smollm2_tokenizer()
    r, out = _cli(["data", "validate", str(src), "--out", "b", "--set", "data.max_length=64", "--model", str(folder)],
                  tmp_path, monkeypatch)
    assert r.exit_code == 0 and "not checked" not in out and "length <= 64" in out, out
    reject = json.loads((tmp_path / "b" / "rejects.jsonl").read_text())
    assert (reject["line"], reject["check"]) == (2, "too_long") and "max_length=64" in reject["reason"]
    r, out = _cli(["data", "validate", str(src), "--out", "c", "--model", "no-such-folder"], tmp_path, monkeypatch)
    assert r.exit_code == 1 and f"{tmp_path / 'no-such-folder'}: not a model folder" in out, out
