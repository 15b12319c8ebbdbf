"""A real vLLM OpenAI-compatible server on the tiny run's merged model, through the official client."""
import httpx
from openai import OpenAI
from transformers import AutoTokenizer

from llm_platform.data.chat import render_chat

MESSAGES = [{"role": "user", "content": "Does Nimbus Notes work offline?"}]


def test_models_endpoint_lists_the_served_model(vllm_server):
    client = OpenAI(base_url=vllm_server.base_url, api_key="none")
    assert [m.id for m in client.models.list().data] == [vllm_server.served_model_name]


def test_chat_completion(vllm_server):
    client = OpenAI(base_url=vllm_server.base_url, api_key="none")
    r = client.chat.completions.create(model=vllm_server.served_model_name, messages=MESSAGES, max_tokens=12,
                                       temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length")


def test_served_prompt_is_the_trained_prompt(vllm_server):
    "Train/serve template parity: vLLM's chat endpoint builds exactly the tokens training used."
    tok = AutoTokenizer.from_pretrained(vllm_server.model_dir)
    ours = tok(render_chat(tok, MESSAGES, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    client = OpenAI(base_url=vllm_server.base_url, api_key="none")
    r = client.chat.completions.create(model=vllm_server.served_model_name, messages=MESSAGES, max_tokens=1)
    assert r.usage.prompt_tokens == len(ours)
    tokenized = httpx.post(vllm_server.base_url.removesuffix("/v1") + "/tokenize",
                           json={"model": vllm_server.served_model_name, "messages": MESSAGES,
                                 "add_generation_prompt": True}, timeout=30).json()
    assert tokenized["tokens"] == ours


def test_streaming_matches_non_streaming(vllm_server):
    client = OpenAI(base_url=vllm_server.base_url, api_key="none")
    kw = dict(model=vllm_server.served_model_name, messages=MESSAGES, max_tokens=10, temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                       if c.choices)
    assert streamed == full


def test_bad_request_gets_openai_error(vllm_server):
    client = OpenAI(base_url=vllm_server.base_url, api_key="none", max_retries=0)
    try:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=1)
    except Exception as e:  # openai.NotFoundError
        assert getattr(e, "status_code", None) == 404
    else:
        raise AssertionError("unknown model accepted")
