"""The Gradio chat UI in headless Chromium (Playwright): type a message, see the model's reply.

As in `make demo`, the UI talks to the gateway (with an API key) in front of the real vLLM
server; the reply in the page must be exactly what the API returns for the same message
(greedy decoding, same limits).
"""
import shutil

import pytest
from browser import ARGS, CHROMIUM, free_port
from openai import OpenAI

from llm_platform.config import load_config
from llm_platform.ui.chat import launch_chat_ui

QUESTION = "How do I export my notes?"



@pytest.fixture(scope="module")
def gateway(vllm_server, tmp_path_factory):
    "The gateway in front of vLLM, configured like the demo's; yields (its /v1 URL, a key)."
    from llm_platform.serve.app import GatewayProcess
    from llm_platform.serve.check import gateway_for
    cfg, key = gateway_for(vllm_server.base_url, "tiny", "tiny-v1", vllm_server.served_model_name,
                           tmp_path_factory.mktemp("ui-gateway"), load_config("configs/serving/gateway.yaml"),
                           free_port())
    # answers of a random model could look like PII; masking the JSON answer but not the stream would
    # make the two differ, which is not what this test is about
    cfg = cfg.model_copy(update={"models": {"tiny": cfg.models["tiny"].model_copy(update={"pii": False})}})
    with GatewayProcess(cfg) as gw:
        yield gw.url + "/v1", key


@pytest.fixture(scope="module")
def chat_ui(gateway):
    cfg = load_config("configs/pipelines/tiny.yaml").ui.model_copy(update={"port": free_port()})
    app, url = launch_chat_ui(gateway[0], "tiny", cfg, block=False, api_key=gateway[1])
    yield url, cfg
    app.close()


@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Chromium not installed (make system-deps)")
def test_chat_in_browser_shows_model_reply(chat_ui, gateway, vllm_server):
    from playwright.sync_api import expect, sync_playwright
    url, cfg = chat_ui
    expected = OpenAI(base_url=gateway[0], api_key=gateway[1]).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": QUESTION}],
        temperature=cfg.temperature, max_tokens=cfg.max_tokens).choices[0].message.content
    assert expected.strip(), "the API itself returned an empty reply"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(url, wait_until="domcontentloaded")
        box = page.get_by_role("textbox").first
        expect(box).to_be_visible(timeout=30_000)
        box.fill(QUESTION)
        box.press("Enter")
        bot = page.locator(".message.bot, [data-testid='bot']").last
        expect(bot).to_be_visible(timeout=60_000)
        page.wait_for_function(
            "(n) => { const m = document.querySelectorAll(\".message.bot, [data-testid='bot']\");"
            " return m.length && m[m.length - 1].innerText.trim().length >= n; }",
            arg=len(expected.strip()) // 2, timeout=60_000)
        page.wait_for_timeout(1000)   # let the stream finish
        shown = bot.inner_text().strip()
        user = page.locator(".message.user, [data-testid='user']").last.inner_text().strip()
        page.screenshot(path=str(vllm_server.log_path.parent / "chat_ui.png"))
        browser.close()
    assert QUESTION in user
    assert " ".join(shown.split()) == " ".join(expected.split()), (shown, expected)
