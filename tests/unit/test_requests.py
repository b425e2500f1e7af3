"""Request bodies and headers: what is accepted, and how refusals name the problem."""

from __future__ import annotations

import json

import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.errors import InvalidRequest, ModelNotFound
from raylane.cluster.messages import (
    ChatPrompt,
    EmbedInputs,
    SamplingParams,
    TextPrompt,
    TokenPrompt,
)
from raylane.router.admission import admit
from raylane.router.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from raylane.router.requests import chat_jobs, completion_jobs, decode, embedding_job

CONFIG = Config(models=[ModelConfig(
    name="m", aliases=["alias"], queue=QueueConfig(timeout_s=20, default_priority=4),
    pools=[PoolConfig(backend="sim")])])


def chat(**fields: object) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(body).encode()


def refusal(body: bytes, type_: type = ChatCompletionRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        decode(body, type_)
    return error.value


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": "five"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"frobnicate": True}, "frobnicate"),
        ({"priority": "high"}, "priority"),
        ({"top_k": -2}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repetition_penalty": 101}, "repetition_penalty"),
    ],
)
def test_bad_fields_are_named(fields: dict, param: str) -> None:
    assert refusal(chat(**fields)).param == param


def test_malformed_json_is_refused() -> None:
    error = refusal(b'{"model": ')
    assert "not valid JSON" in error.message and error.param is None


def test_chat_body_becomes_one_job_with_sampling_params() -> None:
    req = decode(chat(max_completion_tokens=9, temperature=0.2, stop="END", seed=3,
                      messages=[{"role": "system", "content": "be brief"},
                                {"role": "user", "content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]}]),
                 ChatCompletionRequest)
    ticket = admit(CONFIG, "alias", None, {}, "chat")
    (job,) = chat_jobs(req, ticket, "inbox")
    assert job.model == "m" and job.reply_to == "inbox" and job.priority == 4
    assert isinstance(job.prompt, ChatPrompt)
    assert [(m.role, m.content) for m in job.prompt.messages] == [("system", "be brief"),
                                                                  ("user", "ab")]
    p = job.params
    assert (p.max_tokens, p.temperature, p.top_p, p.stop, p.seed) == (9, 0.2, 1.0, ["END"], 3)
    assert (p.top_k, p.min_p, p.repetition_penalty) == (0, 0.0, 1.0)  # OpenAI's sampling
    (penalised,) = chat_jobs(decode(chat(repetition_penalty=1.3), ChatCompletionRequest),
                             ticket, "inbox")
    assert penalised.params.repetition_penalty == 1.3
    assert job.deadline - job.created_at == pytest.approx(20)


def test_min_tokens_and_ignore_eos_reach_the_job_within_max_tokens() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")
    (job,) = chat_jobs(decode(chat(min_tokens=5, ignore_eos=True, max_tokens=9),
                              ChatCompletionRequest), ticket, "inbox")
    assert (job.params.min_tokens, job.params.ignore_eos) == (5, True)
    assert refusal(chat(min_tokens=-1)).param == "min_tokens"
    with pytest.raises(InvalidRequest) as error:
        chat_jobs(decode(chat(min_tokens=10, max_tokens=9), ChatCompletionRequest), ticket,
                  "inbox")
    assert error.value.param == "min_tokens" and "more than the 9" in error.value.message
    for fields, param in (({"ignore_eos": True}, "ignore_eos"), ({"min_tokens": 3}, "min_tokens")):
        body = chat(response_format={"type": "json_object"}, **fields)
        with pytest.raises(InvalidRequest) as error:
            chat_jobs(decode(body, ChatCompletionRequest), ticket, "inbox")
        assert error.value.param == param and "constrained answer" in error.value.message


def test_vllms_top_k_and_min_p_reach_the_job() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")
    for top_k, expected in ((40, 40), (0, 0), (-1, 0)):
        (job,) = chat_jobs(decode(chat(top_k=top_k, min_p=0.05), ChatCompletionRequest),
                           ticket, "inbox")
        assert (job.params.top_k, job.params.min_p) == (expected, 0.05)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("one", [TextPrompt("one")]),
        (["a", "b"], [TextPrompt("a"), TextPrompt("b")]),
        ([1, 2, 3], [TokenPrompt([1, 2, 3])]),
        ([[1, 2], [3]], [TokenPrompt([1, 2]), TokenPrompt([3])]),
    ],
)
def test_completion_prompts_in_every_openai_form(prompt: object, expected: list) -> None:
    req = decode(json.dumps({"model": "m", "prompt": prompt}).encode(), CompletionRequest)
    jobs = completion_jobs(req, admit(CONFIG, "m", None, {}, "text"), "inbox")
    assert [j.prompt for j in jobs] == expected
    assert all(j.params.max_tokens == 16 for j in jobs)  # OpenAI's default for completions
    assert len({j.id for j in jobs}) == len(jobs)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [([], "must not be empty"), (["a", 1], "not a mix"), ([[1], []], "must not be empty")],
)
def test_bad_completion_prompts_are_refused(prompt: object, message: str) -> None:
    req = decode(json.dumps({"model": "m", "prompt": prompt}).encode(), CompletionRequest)
    with pytest.raises(InvalidRequest, match=message):
        completion_jobs(req, admit(CONFIG, "m", None, {}, "text"), "inbox")


def test_logit_bias_goes_to_the_worker_by_token_id() -> None:
    def bias(value: object) -> dict[int, float]:
        req = decode(chat(logit_bias=value), ChatCompletionRequest)
        return chat_jobs(req, admit(CONFIG, "m", None, {}, "chat"), "inbox")[0].params.logit_bias

    assert bias({"1": 5, "42": -100}) == {1: 5.0, 42: -100.0} and bias(None) == {}
    for wrong, needle in (({"x": 1}, "'x' is no token id"), ({"-1": 1}, "'-1' is no token"),
                          ({"٣": 1}, "no token id"), ({"3": 101}, "[-100, 100]")):
        with pytest.raises(InvalidRequest) as error:
            bias(wrong)
        assert error.value.param == "logit_bias" and needle in error.value.message


def test_n_makes_one_job_per_answer_with_its_own_seed() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")
    jobs = chat_jobs(decode(chat(n=3, seed=7), ChatCompletionRequest), ticket, "inbox")
    assert [j.params.seed for j in jobs] == [7, 8, 9]
    assert len({j.id for j in jobs}) == 3 and jobs[0].prompt == jobs[2].prompt
    unseeded = chat_jobs(decode(chat(n=2), ChatCompletionRequest), ticket, "inbox")
    assert [j.params.seed for j in unseeded] == [None, None]
    top = chat_jobs(decode(chat(n=2, seed=2**63 - 1), ChatCompletionRequest), ticket, "inbox")
    assert [j.params.seed for j in top] == [2**63 - 1, -(2**63)]  # wraps within int64


def test_completion_answers_are_ordered_prompt_by_prompt() -> None:
    body = {"model": "m", "prompt": ["a", "b"], "n": 2, "seed": 1}
    req = decode(json.dumps(body).encode(), CompletionRequest)
    jobs = completion_jobs(req, admit(CONFIG, "m", None, {}, "text"), "inbox")
    # OpenAI's choice index is prompt index * n + i: the job order is the choice order.
    assert [(j.prompt, j.params.seed) for j in jobs] == [
        (TextPrompt("a"), 1), (TextPrompt("a"), 2), (TextPrompt("b"), 1), (TextPrompt("b"), 2)]


def test_echo_reaches_the_job_and_alone_allows_max_tokens_zero() -> None:
    ticket = admit(CONFIG, "m", None, {}, "text")

    def params(**fields: object) -> SamplingParams:
        body = json.dumps({"model": "m", "prompt": "x", **fields}).encode()
        return completion_jobs(decode(body, CompletionRequest), ticket, "inbox")[0].params

    assert (params().echo, params().max_tokens) == (False, 16)
    echoed = params(echo=True, max_tokens=0, logprobs=1)
    assert (echoed.echo, echoed.max_tokens, echoed.logprobs) == (True, 0, 1)
    with pytest.raises(InvalidRequest) as error:
        params(max_tokens=0)
    assert error.value.param == "max_tokens" and "echo" in error.value.message
    assert refusal(json.dumps({"model": "m", "prompt": "x", "max_tokens": -1}).encode(),
                   CompletionRequest).param == "max_tokens"


@pytest.mark.parametrize(("fields", "param"), [({"n": 0}, "n"), ({"n": 17}, "n")])
def test_n_is_bounded(fields: dict, param: str) -> None:
    assert refusal(chat(**fields)).param == param


def test_prompts_times_n_count_against_the_prompts_limit() -> None:
    body = {"model": "m", "prompt": ["p"] * 5, "n": 16}
    req = decode(json.dumps(body).encode(), CompletionRequest)
    with pytest.raises(InvalidRequest) as error:
        completion_jobs(req, admit(CONFIG, "m", None, {}, "text"), "inbox")
    assert error.value.param == "n"


def test_json_response_formats_reach_the_job() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")
    plain = chat_jobs(decode(chat(response_format={"type": "text"}), ChatCompletionRequest),
                      ticket, "inbox")[0].params
    assert (plain.json_object, plain.json_schema) == (False, None)
    req = decode(chat(response_format={"type": "json_object"}), ChatCompletionRequest)
    assert chat_jobs(req, ticket, "inbox")[0].params.json_object
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    params = chat_jobs(decode(chat(response_format=fmt), ChatCompletionRequest), ticket,
                       "inbox")[0].params
    assert json.loads(params.json_schema or "") == schema and not params.json_object


@pytest.mark.parametrize(
    ("fmt", "param"),
    [({"type": "xml"}, "response_format.type"),
     ({"type": "json_schema"}, "response_format.json_schema"),
     ({"type": "json_schema", "json_schema": {"name": "bad name!"}},
      "response_format.json_schema.name"),
     ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
      "response_format.json_schema.schema")],
)
def test_bad_response_formats_are_named(fmt: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        req = decode(chat(response_format=fmt), ChatCompletionRequest)
        chat_jobs(req, admit(CONFIG, "m", None, {}, "chat"), "inbox")
    assert error.value.param == param


def test_priority_from_body_beats_header_beats_default() -> None:
    assert admit(CONFIG, "m", 1, {"x-priority": "2"}, "chat").priority == 1
    assert admit(CONFIG, "m", None, {"x-priority": "-2"}, "chat").priority == -2
    assert admit(CONFIG, "m", None, {}, "chat").priority == 4


def test_timeout_header_sets_the_deadline() -> None:
    ticket = admit(CONFIG, "m", None, {"x-request-timeout": "2.5"}, "chat")
    assert ticket.deadline - ticket.created == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("headers", "param"),
    [({"x-priority": "soon"}, "x-priority"), ({"x-priority": "99999999"}, "x-priority"),
     ({"x-request-timeout": "0"}, "x-request-timeout"),
     ({"x-request-timeout": "nan"}, "x-request-timeout")],
)
def test_bad_headers_are_named(headers: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        admit(CONFIG, "m", None, headers, "chat")
    assert error.value.param == param


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound, match="'gpt-9'"):
        admit(CONFIG, "gpt-9", None, {}, "chat")


def test_a_models_max_tokens_cap_refuses_more_and_limits_the_default() -> None:
    capped = Config(models=[ModelConfig(name="m", max_tokens=50,
                                        pools=[PoolConfig(backend="sim")])])
    ticket = admit(capped, "m", None, {}, "chat")
    with pytest.raises(InvalidRequest, match="more than the 50") as error:
        chat_jobs(decode(chat(max_tokens=51), ChatCompletionRequest), ticket, "inbox")
    assert error.value.param == "max_tokens"
    (job,) = chat_jobs(decode(chat(), ChatCompletionRequest), ticket, "inbox")
    assert (job.params.max_tokens, job.params.limit) == (None, 50)


def embedding(**fields: object) -> bytes:
    return json.dumps({"model": "m", **fields}).encode()


@pytest.mark.parametrize(
    ("input_", "expected"),
    [
        ("one", [TextPrompt("one")]),
        (["one", "two"], [TextPrompt("one"), TextPrompt("two")]),
        ([5, 6], [TokenPrompt([5, 6])]),
        ([[5], [6, 7]], [TokenPrompt([5]), TokenPrompt([6, 7])]),
    ],
)
def test_embedding_inputs_in_every_openai_form(input_: object, expected: list) -> None:
    req = decode(embedding(input=input_, dimensions=64), EmbeddingRequest)
    job = embedding_job(req, admit(CONFIG, "m", None, {}, "embedding"), "inbox")
    assert job.kind == "embedding"
    assert job.prompt == EmbedInputs(inputs=expected, dimensions=64)
    assert job.priority == 4


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["fine", ""]}, "input[1]"),
        ({"input": [[1], []]}, "input[1]"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": "x", "encoding_format": "float16"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "extra": 1}, "extra"),
        ({}, "input"),
    ],
)
def test_bad_embedding_requests_are_named(fields: dict, param: str) -> None:
    assert refusal(embedding(**fields), EmbeddingRequest).param == param


def test_mixed_embedding_inputs_are_refused() -> None:
    req = decode(embedding(input=["text", 5]), EmbeddingRequest)
    with pytest.raises(InvalidRequest, match="not a mix") as error:
        embedding_job(req, admit(CONFIG, "m", None, {}, "embedding"), "inbox")
    assert error.value.param == "input"


def test_structured_outputs_reach_the_job_as_one_constraint() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")

    def params(outputs: dict, **fields: object) -> SamplingParams:
        body = chat(structured_outputs=outputs, **fields)
        return chat_jobs(decode(body, ChatCompletionRequest), ticket, "inbox")[0].params

    assert params({"choice": ["yes", "no"]}).choice == ["yes", "no"]
    assert params({"regex": "[0-9]+"}).regex == "[0-9]+"
    assert params({"grammar": 'root ::= "a"'}).grammar == 'root ::= "a"'
    assert params({"json_object": True}).json_object
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert json.loads(params({"json": schema}).json_schema or "") == schema
    assert json.loads(params({"json": json.dumps(schema)}).json_schema or "") == schema
    text = completion_jobs(decode(json.dumps({"model": "m", "prompt": "x", "structured_outputs": {
        "choice": ["a"]}}).encode(), CompletionRequest), ticket, "inbox")[0].params
    assert text.choice == ["a"]


@pytest.mark.parametrize(
    ("outputs", "fields", "param"),
    [({"choice": ["a"], "regex": "a"}, {}, "structured_outputs"),
     ({}, {}, "structured_outputs"),
     ({"choice": []}, {}, "structured_outputs.choice"),
     ({"json": {"type": 12}}, {}, "structured_outputs.json"),
     ({"json": "{not json"}, {}, "structured_outputs.json"),
     ({"choice": ["a"]}, {"response_format": {"type": "json_object"}}, "structured_outputs"),
     ({"choice": ["a"]}, {"min_tokens": 2}, "min_tokens"),
     ({"grammar": 'root ::= "a"'}, {"ignore_eos": True}, "ignore_eos"),
     ({"choice": ["a"], "whitespace_pattern": " "}, {}, "structured_outputs.whitespace_pattern")],
)
def test_bad_structured_outputs_are_named(outputs: dict, fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        req = decode(chat(structured_outputs=outputs, **fields), ChatCompletionRequest)
        chat_jobs(req, admit(CONFIG, "m", None, {}, "chat"), "inbox")
    assert error.value.param == param
