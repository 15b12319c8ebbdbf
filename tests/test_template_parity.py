"""Train/serve template parity: the tokens we train on are exactly what vLLM's chat path builds.

For every template family (SmolLM2, ChatML, Qwen2.5, Qwen3 thinking on/off, Llama 3), the same
messages, template and template kwargs go to our `tokenize_chat`/`render_chat` and to a live vLLM
server's /tokenize (its chat templating path, shared with /v1/chat/completions).
"""
import httpx
import pytest
from transformers import AutoTokenizer

from llm_platform.data.chat import render_chat, tokenize_chat
from llm_platform.data.templates import TEMPLATE_VARIANTS, template_text, with_template

CONVERSATIONS = {
    "single": [{"role": "user", "content": "How do I export my notes?"},
               {"role": "assistant", "content": "Open Settings, choose Export."}],
    "system": [{"role": "system", "content": "You answer in one sentence."},
               {"role": "user", "content": "Is there dark mode?"},
               {"role": "assistant", "content": "Yes, under Appearance."}],
    "multi": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Price of Pro?"}, {"role": "assistant", "content": "4 euros a month."}],
}


def _vllm_tokens(server, messages, family, kwargs, generation_prompt):
    body = {"model": server.served_model_name, "messages": messages, "add_generation_prompt": generation_prompt,
            "chat_template_kwargs": kwargs or None}
    if (text := template_text(family)) is not None:
        body["chat_template"] = text
    r = httpx.post(server.base_url.removesuffix("/v1") + "/tokenize", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


@pytest.mark.parametrize("family,kwargs", TEMPLATE_VARIANTS,
                         ids=[f"{f}{'-' + '-'.join(f'{k}={v}' for k, v in kw.items()) if kw else ''}"
                              for f, kw in TEMPLATE_VARIANTS])
@pytest.mark.parametrize("conv", sorted(CONVERSATIONS))
def test_training_and_serving_tokens_match_vllm(vllm_server, family, kwargs, conv):
    tok = with_template(AutoTokenizer.from_pretrained(vllm_server.model_dir), family)
    messages = CONVERSATIONS[conv]
    # serving: the prompt for the next assistant turn
    prompt = messages[:-1]
    ours = tok(render_chat(tok, prompt, add_generation_prompt=True, **kwargs), add_special_tokens=False)["input_ids"]
    assert ours == _vllm_tokens(vllm_server, prompt, family, kwargs, True)
    # training: the whole conversation, exactly as tokenize_chat feeds it to the trainer
    trained = tokenize_chat(tok, messages, **kwargs)["input_ids"]
    served = _vllm_tokens(vllm_server, messages, family, kwargs, False)
    if render_chat(tok, messages, **kwargs).rstrip().endswith(messages[-1]["content"]):
        served = served + [tok.eos_token_id]   # open final turn (vLLM's ChatML example): we train the stop token
    assert trained == served
