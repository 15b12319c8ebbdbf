"""PII detection and masking on a labelled set (tests/data/pii_labelled.jsonl, built by tests/data/build_pii_set.py).

Thresholds are what the configured pipeline measured on this set (see docs/safety.md) minus a small margin;
the baseline is Presidio's default configuration on the same cases.
"""
import json
from pathlib import Path

import pytest

from llm_platform.safety.evaluate import load_cases, presidio_default_analyzer, score_spans, spans_of
from llm_platform.safety.pii import ENTITIES, PIIConfig, PIIEngine, find_pii

DATA = Path(__file__).parent / "data" / "pii_labelled.jsonl"
CASES = load_cases(DATA)

# measured (precision, recall) per entity, November 2026: all 1.00 except PERSON (0.89, 0.96)
MIN_PR = {e: (0.97, 0.97) for e in ENTITIES} | {"PERSON": (0.83, 0.92)}


@pytest.fixture(scope="module")
def engine():
    return PIIEngine()


@pytest.fixture(scope="module")
def ours(engine):
    return score_spans(CASES, lambda t: spans_of(engine.analyze(t)), list(ENTITIES))


@pytest.fixture(scope="module")
def default():
    analyzer = presidio_default_analyzer()
    return score_spans(CASES, lambda t: spans_of(analyzer.analyze(t, language="en")), list(ENTITIES))


def test_labelled_set_is_large_enough():
    negatives = [c for c in CASES if not c["spans"]]
    assert len(CASES) >= 300 and len(negatives) >= 150
    assert {s[2] for c in CASES for s in c["spans"]} == set(ENTITIES)
    for c in CASES:                                  # spans point inside the text
        for start, end, _ in c["spans"]:
            assert 0 <= start < end <= len(c["text"]), c["id"]


@pytest.mark.parametrize("entity", ENTITIES)
def test_per_entity_precision_recall(ours, entity):
    got = ours["per_entity"][entity]
    p, r = MIN_PR[entity]
    print(entity, got)
    assert got["precision"] >= p and got["recall"] >= r, got


def test_masking_beats_presidio_default(ours, default):
    print("ours", ours["masking"], "default", default["masking"])
    assert ours["masking"]["recall"] >= default["masking"]["recall"]
    assert ours["masking"]["precision"] >= 0.95 and ours["masking"]["recall"] >= 0.95
    assert ours["negatives_flagged"] <= 0.05 * ours["negatives"] < default["negatives_flagged"]


@pytest.mark.parametrize("entity", ENTITIES)
def test_recall_per_entity_at_least_default(ours, default, entity):
    # PHONE_NUMBER includes Ofcom's fictional 07700 900xxx numbers, invalid for libphonenumber in GB (the
    # default "finds" them as Indian numbers): ours finds them through the possible-number tier and a phone word.
    assert ours["per_entity"][entity]["recall"] >= default["per_entity"][entity]["recall"]


@pytest.mark.parametrize("text", [
    "Released version 2.14.3 on 2024-05-01 and v3.0.0.12 on 12/03/2024.",
    "Order 4155550132 and order #2125550199 shipped; invoice INV-2024-00017.",
    "Build 10.0.19045.255 fixed it; reference 123-45-6789-X is a case code.",
    "Card 4111 1111 1111 1112 failed the checksum; so did GB82 WEST 1234 5698 7654 33.",
    "Open Settings, choose Export; every plan has 10 GB. Hello, How do I sync?",
])
def test_hard_negatives_are_not_masked(engine, text):
    assert engine.analyze(text) == [] and engine.mask(text).text == text


def test_found_values_are_gone_after_masking(engine):
    "Whatever overlaps a gold span is masked so that the value no longer appears (misses are scored above)."
    checked = 0
    for c in CASES:
        found, masked = engine.analyze(c["text"]), engine.mask(c["text"]).text
        for start, end, _ in c["spans"]:
            if any(f.start < end and start < f.end for f in found):
                assert c["text"][start:end] not in masked, c["id"]
                checked += 1
    assert checked >= 300


def test_operators(engine, monkeypatch):
    t = "Mail jane.doe@example.com, SSN 536-22-1234."
    assert engine.mask(t, "replace").text == "Mail <EMAIL_ADDRESS>, SSN <US_SSN>."
    assert engine.mask(t, "redact").text == "Mail , SSN ."
    assert engine.mask(t, "mask").text == "Mail " + "*" * 20 + ", SSN " + "*" * 11 + "."
    h1, h2 = engine.mask(t, "hash").text, engine.mask(t, "hash").text
    assert "jane" not in h1 and "536-22" not in h1 and h1 != h2              # random salt per call
    monkeypatch.setenv("PII_SALT_TEST", "a-salt-of-sixteen-bytes-or-more")
    salted = PIIEngine(PIIConfig(hash_salt_env="PII_SALT_TEST", spacy_model=None, entities=["EMAIL_ADDRESS"]))
    assert salted.mask(t, "hash").text == salted.mask(t, "hash").text      # stable pseudonyms with a salt
    monkeypatch.setenv("LLM_PLATFORM_PII_KEY", "k" * 32)
    m = engine.mask(t, "encrypt")
    assert "jane" not in m.text and engine.decrypt(m) == t
    monkeypatch.setenv("LLM_PLATFORM_PII_KEY", "z" * 32)
    try:                                  # Presidio's operator is AES-CBC: a wrong key fails padding or yields garbage
        wrong = engine.decrypt(m)
    except ValueError:
        wrong = None
    assert wrong != t
    monkeypatch.delenv("LLM_PLATFORM_PII_KEY")
    with pytest.raises(ValueError, match="LLM_PLATFORM_PII_KEY"):
        engine.mask(t, "encrypt")


def test_per_entity_operator_override():
    e = PIIEngine(PIIConfig(spacy_model=None, operators={"CREDIT_CARD": "mask"}))
    assert e.mask("card 4111-1111-1111-1111 to a@example.com").text == "card " + "*" * 19 + " to <EMAIL_ADDRESS>"


def test_hook_works_in_the_data_validator(tmp_path):
    from llm_platform.config import DataConfig
    from llm_platform.data.ingest import iter_raw
    from llm_platform.data.validate import RecordValidator
    chat = lambda q: json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Sure."}]})
    p = tmp_path / "chats.jsonl"
    p.write_text("\n".join([chat("How do I export version 2.1.0 notes to PDF?"),
                            chat("Reach me on +44 20 7946 0958 about the refund, I'm Maria Garcia.")]) + "\n")
    v = RecordValidator(DataConfig(path=str(p), pii_hook="llm_platform.safety.pii:find_pii"))
    verdicts = [v.check(raw) for raw in iter_raw(p)]
    assert verdicts[0].check is None and verdicts[1].check == "pii"
    assert "PHONE_NUMBER" in verdicts[1].reason and "Maria" not in verdicts[1].reason and "7946" not in verdicts[1].reason
    assert [str(f) for f in find_pii("SSN 536-22-1234")] == ["US_SSN"]


def test_context_words_still_count(engine):
    "Presidio's context words raise weak matches even though NER reads a blanked text."
    assert [f.entity for f in engine.analyze("My SSN is 536221234.")] == ["US_SSN"]    # 9 digits: weak alone
    assert engine.analyze("Order 536221234 shipped.") == []


def test_spacy_memory_is_bounded():
    "Unique words would grow spaCy's string store forever; the engine swaps in fresh pipelines."
    import secrets
    e = PIIEngine(PIIConfig(max_vocab_strings=3000))
    nlp_engine = e.analyzer.nlp_engine
    sizes = []
    for _ in range(60):
        word = lambda: "".join(chr(97 + int(c, 16)) for c in secrets.token_hex(6))        # unique letters-only words
        text = "Dear Maria Garcia, " + " ".join(word() for _ in range(100))
        assert [f.entity for f in e.analyze(text)] == ["PERSON"]
        sizes.append(len(nlp_engine.tokenizer.vocab.strings))
    assert max(sizes) < sizes[0] + 3000 + 200 and min(sizes[30:]) < max(sizes)        # it was rebuilt, and still works


# Issue 13: classes a run on outside data missed (cases carry a "class"; tests/data/build_pii_set.py writes them).
ISSUE13 = ("phone_possible_no_cue", "email_private_tld", "name_rare_first", "name_read_as_place")


def covered(span, findings) -> bool:
    "Every non-space character of the gold span lies inside some finding: nothing of the value is left readable."
    start, end, _ = span
    return all(any(f.start <= i < f.end for f in findings) for i in range(start, end))


@pytest.mark.parametrize("cls", ISSUE13)
def test_issue13_classes_are_masked_whole(engine, cls):
    cases = [c for c in CASES if c.get("class") == cls]
    assert len(cases) >= 20, cls
    whole = [all(covered(s, engine.analyze(c["text"])) for s in c["spans"]) for c in cases]
    print(cls, f"{sum(whole)}/{len(cases)} masked whole")
    assert sum(whole) >= (len(cases) if cls.startswith(("phone", "email")) else 0.95 * len(cases)), cls
    for c in cases:                             # a name found is a name masked whole: no first name left behind
        masked = engine.mask(c["text"]).text
        if masked != c["text"] and c["spans"][0][2] == "PERSON":
            start, end, _ = c["spans"][0]
            assert not any(w in masked for w in c["text"][start:end].split()), (c["id"], masked)


def test_issue13_targets_on_the_whole_set(ours):
    "The targets of issue 13: recall >= 0.98, precision >= 0.95, at most 2% of hard negatives flagged."
    m = ours["masking"]
    print(m, ours["negatives_flagged"], "/", ours["negatives"])
    assert m["recall"] >= 0.98 and m["precision"] >= 0.95, m
    assert ours["negatives_flagged"] <= 0.02 * ours["negatives"], ours["negatives_flagged"]


@pytest.mark.parametrize("text, want", [
    ("Leave it with Kwame Brennan at reception.", ["PERSON"]),             # first name not in the census list
    ("The invoice was signed by Savannah Pruitt.", ["PERSON"]),            # read as a place by the small model
    ("Pager duty rotates to oncall@db-primary.internal tonight.", ["EMAIL_ADDRESS"]),
    ("The form says +1 286 555 7710 for the warehouse.", ["PHONE_NUMBER"]),  # unallocated area code, no phone word
    ("Use +44 (0)20 6120 4432 for the London desk.", ["PHONE_NUMBER"]),    # unused London range, kept whole
])
def test_issue13_unseen_examples(engine, text, want):
    found = engine.analyze(text)
    assert [f.entity for f in found] == want, found
    assert "Kwame" not in engine.mask(text).text and "+44" not in engine.mask(text).text


@pytest.mark.parametrize("text", [
    "Release 3.12.4-rc1 of the SDK shipped on 2026-03-09.",
    "Order B-4471-2290 and serial number 300-412-5567 are on the invoice.",
    "The bill was $2,418.50 for the Lincoln Park and Virginia Beach offices.",
    "Flights from Santa Monica to Hong Kong were cancelled; the Orbit Mail app sent the notice.",
    "Go to Settings and toggle Dark Theme, then click Share.",
])
def test_issue13_hard_negatives_are_not_masked(engine, text):
    assert engine.analyze(text) == [], engine.analyze(text)
