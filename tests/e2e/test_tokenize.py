"""Tokenizing through a running raylane: vLLM's `/tokenize` and `/detokenize`, and the
Anthropic SDK's `messages.count_tokens`, on both engines (llama.cpp and vLLM on this CPU,
both serving SmolLM2-135M-Instruct).

A count is what the model's worker reads: the usage a generation of the same prompt
reports.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL, VLLM_MODEL, Running

QUESTION = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def http(cluster: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        yield client




def test_tokenize_counts_the_prompt_a_completion_reads_and_detokenize_inverts_it(
    http: httpx.Client, openai_client: openai.OpenAI, model: str,
) -> None:
    chat = http.post("/tokenize", json={"model": model, "messages": QUESTION,
                                        "return_token_strs": True})
    assert chat.status_code == 200, chat.text
    body = chat.json()
    answer = openai_client.chat.completions.create(model=model, messages=QUESTION,  # type: ignore[arg-type]
                                                   max_tokens=1)
    assert answer.usage is not None
    assert body["count"] == len(body["tokens"]) == answer.usage.prompt_tokens == 34
    assert body["token_strs"][-4:] == ["<|im_start|>", "ass", "istant", "Ċ"]
    assert body["max_model_len"] > 0
    assert chat.headers["x-raylane-queue-wait-ms"].isdigit()

    text = http.post("/tokenize", json={"model": model, "prompt": "Once upon a time",
                                        "add_special_tokens": False}).json()
    assert text["token_strs"] is None
    completion = openai_client.completions.create(model=model, prompt=text["tokens"],
                                                  max_tokens=1)
    assert completion.usage is not None and completion.usage.prompt_tokens == text["count"]
    back = http.post("/detokenize", json={"model": model, "tokens": text["tokens"]})
    assert back.json() == {"prompt": "Once upon a time"}


def test_refusals_name_the_field(http: httpx.Client) -> None:
    cases = [
        ("/tokenize", {"model": MODEL}, "messages"),
        ("/tokenize", {"prompt": "Hi"}, "model"),  # two models are served: name one
        ("/detokenize", {"model": MODEL, "tokens": [1, 10**9]}, "tokens"),
        ("/detokenize", {"model": VLLM_MODEL, "tokens": [-1]}, "tokens[0]"),
    ]
    for path, body, param in cases:
        refused = http.post(path, json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param
    unknown = http.post("/tokenize", json={"model": "nope", "prompt": "Hi"})
    assert unknown.status_code == 404


def test_the_anthropic_sdk_counts_the_input_tokens_of_a_message(cluster: Running,
                                                                model: str) -> None:
    with anthropic.Anthropic(base_url=cluster.url, api_key="any", max_retries=0) as client:
        conversation = {"model": model, "system": "Answer in one word.",
                        "messages": QUESTION}
        counted = client.messages.count_tokens(**conversation)  # type: ignore[arg-type]
        sent = client.messages.create(max_tokens=1, **conversation)  # type: ignore[arg-type]
        assert counted.input_tokens == sent.usage.input_tokens > 0
        with pytest.raises(anthropic.BadRequestError, match="thinking"):
            client.messages.count_tokens(thinking={"type": "enabled", "budget_tokens": 1024},
                                         **conversation)  # type: ignore[arg-type]
