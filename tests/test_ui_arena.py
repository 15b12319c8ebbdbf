"""The blind review arena in headless Chromium (Playwright): ask, see two answers, vote, read the votes file.

Real components, as in `make demo`: two OpenAI-shaped upstream processes (`UpstreamServer`), the
gateway in front of them serving `champion` and `challenger` with different versions (it sets
`x-model-version`), an API key, and the arena app with the chat as its first tab. Each upstream's
answer names its side, so the test can tell which side the page showed as A, and check that the
vote the page recorded maps A/B back to the right side, with the versions the gateway reported.
No vLLM here: the arena adds about 20 s to the suite.
"""
import json
import re
import shutil

import pytest
from browser import ARGS, CHROMIUM, free_port
from statsmodels.stats.proportion import proportion_confint

from llm_platform.config import load_config
from llm_platform.evaluation.gate import read_votes
from llm_platform.security.auth import APIKeyStore
from llm_platform.serve.app import GatewayProcess
from llm_platform.serve.config import GatewayConfig
from llm_platform.serve.upstream import UpstreamServer
from llm_platform.ui.arena import ArenaConfig, launch_review_ui

VERSIONS = {"champion": "demo/7", "challenger": "demo/8"}     # what the gateway reports per side
PROMPTS = ["How do I export my notes?", "Can I share a notebook?"]



@pytest.fixture(scope="module")
def arena_gateway(tmp_path_factory):
    "Two upstreams behind one gateway as `champion` and `challenger`; yields (the gateway's /v1 URL, a key)."
    folder = tmp_path_factory.mktemp("arena-gateway")
    base = load_config("configs/serving/gateway.yaml")
    ups = {side: UpstreamServer(name=side, contents=[f"This is the {side} ", "answering."]).start()
           for side in VERSIONS}
    try:
        route = base.models[next(iter(base.models))].model_dump()
        cfg = GatewayConfig.model_validate({**base.model_dump(), "port": free_port(), "workers": 1, "store": "memory://",
            "models": {side: {**route, "target": None, "guardrails": None, "pii": False,
                              "replicas": [{"url": ups[side].url, "version": VERSIONS[side], "upstream_model": side}]}
                       for side in VERSIONS},
            "auth": {**base.auth.model_dump(), "key_store": str(folder / "api_keys.json")},
            "audit": {**base.audit.model_dump(), "path": str(folder / "audit.jsonl")},
            "manager": {**base.manager.model_dump(), "state_dir": str(folder)}})
        key, _ = APIKeyStore(folder / "api_keys.json", cfg.auth.key_prefix).create("arena", ["chat"], ttl_days=1)
        with GatewayProcess(cfg, log_path=folder / "gateway.log") as gw:
            yield gw.url + "/v1", key
    finally:
        for up in ups.values():
            up.kill()


@pytest.fixture(scope="module")
def arena_ui(arena_gateway, tmp_path_factory):
    votes = tmp_path_factory.mktemp("arena") / "votes.jsonl"
    cfg = ArenaConfig(port=free_port(), votes_path=str(votes), temperature=0, max_tokens=32)
    app, url = launch_review_ui(cfg, arena_gateway[0], with_chat=True, chat_model="champion", api_key=arena_gateway[1],
                                block=False)
    yield url, votes
    app.close()


def _side(answer: str) -> str:
    "Which upstream wrote this answer."
    sides = [s for s in VERSIONS if f"the {s} " in answer]
    assert len(sides) == 1, answer
    return sides[0]


@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Chromium not installed (make system-deps)")
def test_arena_in_browser_records_blind_votes(arena_ui):
    from playwright.sync_api import expect, sync_playwright
    url, votes = arena_ui
    seen = []                                   # (side shown as A, button pressed)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(url, wait_until="domcontentloaded")
        tab = page.get_by_role("tab", name="Review arena")
        expect(tab).to_be_visible(timeout=30_000)
        tab.click()
        expect(page.locator("#arena-standings")).to_contain_text("no decisive votes yet", timeout=10_000)
        page.locator("#arena-name textarea, #arena-name input").first.fill("Ana Reviewer")
        for prompt, picked in zip(PROMPTS, ("A", "B")):
            page.locator("#arena-prompt textarea").fill(prompt)
            page.locator("#arena-ask").click()
            button = page.locator(f"#arena-vote-{picked}")
            expect(button).to_be_enabled(timeout=30_000)         # enabled with this round's answers, not before
            a, b = page.locator("#arena-answer-a textarea"), page.locator("#arena-answer-b textarea")
            expect(a).to_have_value(re.compile(r"answering\."), timeout=10_000)
            expect(b).to_have_value(re.compile(r"answering\."), timeout=10_000)
            shown_a, shown_b = _side(a.input_value()), _side(b.input_value())
            assert {shown_a, shown_b} == set(VERSIONS)          # both sides, one in each box
            button.click()
            expect(page.locator("#arena-reveal")).to_contain_text("Recorded as", timeout=30_000)
            expect(button).to_be_disabled(timeout=10_000)       # one round, one vote
            seen.append((shown_a, picked))
        standings = page.locator("#arena-standings").inner_text()
        page.screenshot(path=str(votes.parent / "arena.png"), full_page=True)
        page.get_by_role("tab", name="Chat").click()            # the chat tab beside it talks to the champion
        box = page.get_by_role("textbox").first
        expect(box).to_be_visible(timeout=10_000)
        box.fill("hello")
        box.press("Enter")
        expect(page.locator(".message.bot, [data-testid='bot']").last).to_contain_text(
            "This is the champion answering.", timeout=30_000)
        browser.close()

    rows = [json.loads(line) for line in votes.read_text().splitlines()]
    assert len(rows) == 2
    for row, prompt, (shown_a, picked) in zip(rows, PROMPTS, seen):
        expected = shown_a if picked == "A" else next(s for s in VERSIONS if s != shown_a)
        assert row["choice"] == expected and row["picked"] == picked and row["order"]["A"] == shown_a
        assert row["voter"] == "Ana Reviewer" and row["prompt"] == prompt
        for side in VERSIONS:
            assert row[side]["version"] == VERSIONS[side] and row[side]["model"] == side
            assert row[side]["request_id"] and f"the {side} " in row[side]["answer"]
    wins = sum(r["choice"] == "challenger" for r in rows)
    lo, hi = proportion_confint(wins, 2, alpha=0.05, method="wilson")
    assert f"Challenger win rate: {wins / 2:.1%}" in standings and f"[{lo:.1%}, {hi:.1%}]" in standings, standings
    assert f"({wins} of 2 decisive votes)" in standings
    assert read_votes(votes) == {"champion": 2 - wins, "challenger": wins, "tie": 0, "both_bad": 0}   # the gate takes it


@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Chromium not installed (make system-deps)")
def test_arena_with_reviewer_logins_records_the_logged_in_user(arena_gateway, tmp_path, monkeypatch):
    "With `users_env`, the arena asks for a login, and the login (not a typed name) is the voter."
    from playwright.sync_api import expect, sync_playwright
    monkeypatch.setenv("ARENA_TEST_REVIEWERS", "bo:s3cret-pw,ana:other")
    votes = tmp_path / "votes.jsonl"
    cfg = ArenaConfig(port=free_port(), votes_path=str(votes), temperature=0, max_tokens=32,
                      users_env="ARENA_TEST_REVIEWERS")
    app, url = launch_review_ui(cfg, arena_gateway[0], with_chat=False, api_key=arena_gateway[1], block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            expect(page.locator("input[type=password]")).to_be_visible(timeout=30_000)
            page.locator("input[type=text]").first.fill("bo")
            page.locator("input[type=password]").fill("s3cret-pw")
            page.locator("input[type=password]").press("Enter")
            expect(page.locator("#arena-ask")).to_be_visible(timeout=30_000)
            page.locator("#arena-prompt textarea").fill(PROMPTS[0])    # no name typed: the login is the voter
            page.locator("#arena-ask").click()
            expect(page.locator("#arena-vote-tie")).to_be_enabled(timeout=30_000)
            page.locator("#arena-vote-tie").click()
            expect(page.locator("#arena-reveal")).to_contain_text("Recorded as tie", timeout=30_000)
            expect(page.locator("#arena-standings")).to_contain_text("no decisive votes yet")
            browser.close()
    finally:
        app.close()
    (row,) = [json.loads(line) for line in votes.read_text().splitlines()]
    assert row["voter"] == "bo" and row["choice"] == "tie" and row["picked"] == "tie"
