"""`/tokenize`, `/detokenize` and `/v1/messages/count_tokens` without a cluster: the jobs
their bodies become, and how refusals name the problem."""

from __future__ import annotations

import json

import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig
from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    DetokenizeInputs,
    Job,
    TextPrompt,
    TokenizeInputs,
    Tokens,
    job_decoder,
    job_encoder,
)
from raylane.router.admission import admit
from raylane.router.anthropic_protocol import CountTokensRequest, MessagesRequest
from raylane.router.anthropic_requests import count_job, message_job, messages_tools
from raylane.router.jobs import reservation
from raylane.router.protocol import DetokenizeRequest, TokenizeRequest
from raylane.router.requests import decode
from raylane.router.tokenize import (
    detokenize_job,
    detokenize_response,
    named_model,
    tokenize_job,
    tokenize_response,
)

MODEL = ModelConfig(name="m", pools=[PoolConfig(backend="sim")])
CONFIG = Config(models=[MODEL])
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def tokenize(**fields: object) -> Job:
    req = decode(json.dumps({"model": "m", **fields}).encode(), TokenizeRequest)
    job = tokenize_job(req, admit(CONFIG, "m", None, {}, "tokenize"), "inbox")
    assert job_decoder.decode(job_encoder.encode(job)) == job  # as a worker reads it
    return job


def refused(**fields: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        tokenize(**fields)
    return error.value


def test_a_text_prompt_is_tokenized_with_its_special_tokens_unless_told_not_to() -> None:
    job = tokenize(prompt="Hello")
    assert job.kind == "tokenize" and reservation(job, MODEL) == 0
    assert job.prompt == TokenizeInputs(TextPrompt("Hello"))
    assert tokenize(prompt="Hi", add_special_tokens=False, return_token_strs=True).prompt == \
        TokenizeInputs(TextPrompt("Hi"), add_special_tokens=False, token_strs=True)


def test_messages_are_tokenized_as_a_chat_completion_renders_them() -> None:
    job = tokenize(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                   add_generation_prompt=False, tools=[TOOL])
    assert isinstance(job.prompt, TokenizeInputs) and not job.prompt.add_generation_prompt
    prompt = job.prompt.prompt
    assert isinstance(prompt, ChatPrompt) and prompt.messages[0].content == "Hi"
    assert prompt.tools is not None and json.loads(prompt.tools) == [TOOL]
    assert not prompt.tools_forced


@pytest.mark.parametrize(("fields", "param"), [
    ({}, "messages"),
    ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt"),
    ({"prompt": "a", "tools": [TOOL]}, "tools"),
    ({"messages": [{"role": "user", "content": "b"}], "add_special_tokens": True},
     "add_special_tokens"),
    ({"messages": [{"role": "user", "content": "b"}], "continue_final_message": True},
     "continue_final_message"),
    ({"messages": [{"role": "user", "content": "b", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     "messages[0].tool_calls"),
])
def test_what_cannot_be_tokenized_is_named(fields: dict, param: str) -> None:
    assert refused(**fields).param == param


def test_bad_fields_are_named() -> None:
    for body, param in ((b'{"prompt": 1}', "prompt"), (b'{"tokens": [-1]}', "tokens[0]"),
                        (b'{"tokens": [1], "chat_template": "x"}', "chat_template")):
        kind = TokenizeRequest if b"prompt" in body else DetokenizeRequest
        with pytest.raises(InvalidRequest) as error:
            decode(body, kind)
        assert error.value.param == param


def test_the_model_may_be_left_out_where_one_is_served() -> None:
    assert named_model(CONFIG, None) == "m"
    assert named_model(CONFIG, "other") == "other"
    two = Config(models=[MODEL, ModelConfig(name="n", pools=[PoolConfig(backend="sim")])])
    with pytest.raises(InvalidRequest, match=r"several models \(m, n\)") as error:
        named_model(two, None)
    assert error.value.param == "model"


def test_detokenize_carries_the_ids_and_both_answers_take_vllms_shape() -> None:
    req = decode(b'{"tokens": [1, 2, 3]}', DetokenizeRequest)
    job = detokenize_job(req, admit(CONFIG, "m", None, {}, "tokenize"), "inbox")
    assert job.kind == "tokenize" and job.prompt == DetokenizeInputs([1, 2, 3])
    answer = Tokens(tokens=[5, 6], strs=["a", "Ġb"], context_length=512)
    assert tokenize_response(answer) == {"count": 2, "max_model_len": 512, "tokens": [5, 6],
                                         "token_strs": ["a", "Ġb"]}
    assert tokenize_response(Tokens(tokens=[5]))["token_strs"] is None
    assert detokenize_response(Tokens(text="a b")) == {"prompt": "a b"}


def test_count_tokens_tokenizes_the_prompt_a_message_would_have() -> None:
    conversation = {"model": "m", "system": "Be brief.", "tools": [{
        "name": "weather", "input_schema": {"type": "object"}}],
                    "tool_choice": {"type": "any"},
                    "messages": [{"role": "user", "content": "Weather in Oslo?"}]}
    ticket = admit(CONFIG, "m", None, {}, "tokenize")
    count = count_job(decode(json.dumps(conversation).encode(), CountTokensRequest), ticket,
                      "inbox")
    message = decode(json.dumps({**conversation, "max_tokens": 5}).encode(), MessagesRequest)
    sent = message_job(message, ticket, "inbox", messages_tools(message))
    assert count.kind == "tokenize" and count.prompt == TokenizeInputs(sent.prompt)
    assert isinstance(sent.prompt, ChatPrompt) and sent.prompt.tools_forced
    with pytest.raises(InvalidRequest) as error:
        decode(json.dumps({**conversation, "max_tokens": 5}).encode(), CountTokensRequest)
    assert error.value.param == "max_tokens"
    thinking = decode(json.dumps({**conversation, "thinking": {"type": "enabled"}}).encode(),
                      CountTokensRequest)
    with pytest.raises(InvalidRequest) as error:
        count_job(thinking, ticket, "inbox")
    assert error.value.param == "thinking"
