"""From an OpenAI request body to queue jobs: checks, sampling parameters, prompts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import jsonschema
import msgspec

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    EmbedInputs,
    Job,
    Message,
    SamplingParams,
    TextPrompt,
    TokenPrompt,
    ToolCall,
    Work,
    constrained,
)
from raylane.router.admission import Ticket
from raylane.router.errors import invalid_body
from raylane.router.protocol import (
    INT64_MIN,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    JsonObjectFormat,
    JsonSchemaFormat,
    ResponseFormat,
    Sampling,
    StructuredOutputs,
    TextFormat,
)
from raylane.router.tools import ToolPlan, tool_plan

T = TypeVar("T")

MAX_PROMPTS = 64


def decode(body: bytes, type_: type[T]) -> T:
    """Decode a JSON body into `type_`, or raise InvalidRequest naming the field."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise invalid_body(exc) from None


def sampling(req: Sampling, max_tokens: int | None, cap: int | None = None) -> SamplingParams:
    """The SamplingParams of a request, after checking what raylane cannot do yet."""
    if cap is not None and max_tokens is not None and max_tokens > cap:
        raise InvalidRequest(f"max_tokens is {max_tokens}, more than the {cap} this model "
                             "allows per request.", param="max_tokens")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    most = max_tokens if max_tokens is not None else cap
    if req.min_tokens and most is not None and req.min_tokens > most:
        raise InvalidRequest(f"min_tokens is {req.min_tokens}, more than the {most} "
                             "max_tokens allows.", param="min_tokens")
    return SamplingParams(
        max_tokens=max_tokens,
        limit=cap,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=max(req.top_k or 0, 0),
        min_p=req.min_p or 0.0,
        stop=stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        repetition_penalty=req.repetition_penalty or 1.0,
        min_tokens=req.min_tokens or 0,
        ignore_eos=bool(req.ignore_eos),
        logit_bias=_logit_bias(req.logit_bias),
        **_structured(req.structured_outputs),
    )


def _structured(outputs: StructuredOutputs | None) -> dict[str, Any]:
    """The SamplingParams fields of vLLM's `structured_outputs` (exactly one constraint)."""
    if outputs is None:
        return {}
    given = [name for name in ("choice", "regex", "grammar", "json", "json_object")
             if getattr(outputs, name) not in (None, False)]
    if len(given) != 1:
        raise InvalidRequest("structured_outputs takes exactly one of choice, regex, grammar, "
                             f"json and json_object; it has {len(given)}.",
                             param="structured_outputs")
    if outputs.choice is not None:
        return {"choice": outputs.choice}
    if outputs.regex is not None:
        return {"regex": outputs.regex}
    if outputs.grammar is not None:
        return {"grammar": outputs.grammar}
    if outputs.json_object:
        return {"json_object": True}
    schema = outputs.json
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            raise InvalidRequest("structured_outputs.json is no JSON text.",
                                 param="structured_outputs.json") from None
    if not isinstance(schema, dict):
        raise InvalidRequest("structured_outputs.json is no JSON Schema object.",
                             param="structured_outputs.json")
    return {"json_schema": checked_schema(schema, "structured_outputs.json")}


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    """OpenAI's `logit_bias` (token ids as strings) with int keys, checked."""
    out = {}
    for key, value in (bias or {}).items():
        if not key.isascii() or not key.isdigit():
            raise InvalidRequest(f"logit_bias maps token ids to biases; {key!r} is no token "
                                 "id.", param="logit_bias")
        if not -100 <= value <= 100:
            raise InvalidRequest(f"logit_bias values lie in [-100, 100]; token {key} has "
                                 f"{value:g}.", param="logit_bias")
        out[int(key)] = float(value)
    return out


def chat_jobs(req: ChatCompletionRequest, ticket: Ticket, reply_to: str,
              tools: ToolPlan | None = None) -> list[Job]:
    """The jobs of a chat request (`tools`: its tool plan, when the caller made it)."""
    tools = tool_plan(req) if tools is None else tools
    params = sampling(req, req.max_completion_tokens or req.max_tokens, ticket.model.max_tokens)
    if req.structured_outputs is not None and (
            tools.schema or not isinstance(req.response_format, TextFormat | None)):
        raise InvalidRequest("structured_outputs cannot be combined with a JSON "
                             "response_format or a forced tool call.",
                             param="structured_outputs")
    params = _response_format(params, req.response_format)
    params = msgspec.structs.replace(params, logprobs=_top_logprobs(req),
                                     json_schema=tools.schema or params.json_schema)
    _constraint_ends_the_answer(params)
    messages = chat_messages(req.messages)
    prompt = ChatPrompt(messages=messages, tools=tools.tools, tools_forced=bool(tools.schema))
    return [_job(ticket, "chat", prompt, p, reply_to) for p in _choices(params, req.n)]


def _constraint_ends_the_answer(params: SamplingParams) -> None:
    """Refuse `ignore_eos` and `min_tokens` with a constrained answer (a response format,
    structured outputs or a forced call): the answer ends where the constraint is met, on
    llama.cpp as on vLLM."""
    if not constrained(params):
        return
    for name, asked in (("ignore_eos", params.ignore_eos), ("min_tokens", params.min_tokens)):
        _unsupported(bool(asked), name, f"{name} cannot be combined with a constrained answer "
                     "(response_format json_object or json_schema, structured_outputs, or a "
                     "forced tool call): the answer ends where the constraint is met.")


def _top_logprobs(req: ChatCompletionRequest) -> int | None:
    """Alternatives per token the caller wants; None for no log probabilities."""
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs: true.", param="top_logprobs")
    return (req.top_logprobs or 0) if req.logprobs else None


def chat_messages(messages: list[ChatMessage]) -> list[Message]:
    """A request's chat messages as a job carries them, after checking their tool calls."""
    return [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]


def _message(m: ChatMessage, where: str) -> Message:
    _unsupported(bool(m.tool_calls) and m.role != "assistant", f"{where}.tool_calls",
                 "Only assistant messages make tool calls.")
    _unsupported(m.role == "tool" and not m.tool_call_id, f"{where}.tool_call_id",
                 "A tool message needs the tool_call_id of the call it answers.")
    calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
             for c in m.tool_calls or []]
    return Message(role=m.role, content=m.text(), name=m.name, tool_calls=calls,
                   tool_call_id=m.tool_call_id)


def completion_jobs(req: CompletionRequest, ticket: Ticket, reply_to: str) -> list[Job]:
    _unsupported(req.best_of not in (None, 1), "best_of", "Only best_of=1 is supported.")
    _unsupported(bool(req.suffix), "suffix", "suffix is not supported.")
    _unsupported(req.max_tokens == 0 and not req.echo, "max_tokens",
                 "max_tokens must be at least 1 (0 only with echo: the prompt alone).")
    max_tokens = req.max_tokens
    if max_tokens is None:
        max_tokens = min(16, ticket.model.max_tokens or 16)
    params = sampling(req, max_tokens, ticket.model.max_tokens)
    params = msgspec.structs.replace(params, logprobs=req.logprobs, echo=bool(req.echo))
    _constraint_ends_the_answer(params)
    prompts = _prompts(req.prompt)
    if len(prompts) * req.n > MAX_PROMPTS:
        raise InvalidRequest(f"At most {MAX_PROMPTS} answers per request (prompts times n).",
                             param="n" if req.n > 1 else "prompt")
    # OpenAI's order: choice index = prompt index * n + i.
    return [_job(ticket, "completion", prompt, p, reply_to)
            for prompt in prompts for p in _choices(params, req.n)]


def _response_format(params: SamplingParams, fmt: ResponseFormat | None) -> SamplingParams:
    """Carry a JSON response format to the worker, after checking the schema is one."""
    if isinstance(fmt, JsonObjectFormat):
        return msgspec.structs.replace(params, json_object=True)
    if not isinstance(fmt, JsonSchemaFormat):
        return params
    schema = checked_schema(fmt.json_schema.schema or {}, "response_format.json_schema.schema")
    return msgspec.structs.replace(params, json_schema=schema)


def checked_schema(schema: dict[str, Any], param: str) -> str:
    """A JSON Schema the answer must match, as JSON text; InvalidRequest naming `param`
    if it is no valid schema."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"The JSON schema is not valid: {exc.message}",
                             param=param) from None
    return json.dumps(schema)


def _choices(params: SamplingParams, n: int) -> list[SamplingParams]:
    """The params of each of `n` answers to one prompt: with a seed, seed + i (wrapped into
    int64), so the answers differ yet repeat."""
    if n == 1 or params.seed is None:
        return [params] * n
    return [msgspec.structs.replace(params, seed=(params.seed + i - INT64_MIN) % 2**64 + INT64_MIN)
            for i in range(n)]


def embedding_job(req: EmbeddingRequest, ticket: Ticket, reply_to: str) -> Job:
    """One job for all the inputs of an embedding request (the engine batches them)."""
    inputs = _prompts(req.input, "input")
    work = EmbedInputs(inputs=inputs, dimensions=req.dimensions)
    return _job(ticket, "embedding", work, SamplingParams(), reply_to)


def _prompts(prompt: str | list[str | int | list[int]], param: str = "prompt"
             ) -> list[TextPrompt | TokenPrompt]:
    if isinstance(prompt, str):
        return [TextPrompt(prompt)]
    if not prompt:
        raise InvalidRequest(f"{param} must not be empty.", param=param)
    if all(isinstance(p, str) for p in prompt):
        return [TextPrompt(p) for p in prompt]  # type: ignore[arg-type]
    if all(isinstance(p, int) for p in prompt):
        return [TokenPrompt(list(prompt))]  # type: ignore[arg-type]
    if not all(isinstance(p, list) for p in prompt):
        raise InvalidRequest(f"{param} must be a string, a list of strings, a list of token ids "
                             "or a list of lists of token ids, not a mix.", param=param)
    if any(not p for p in prompt):
        raise InvalidRequest(f"A token {param} must not be empty.", param=param)
    return [TokenPrompt(list(p)) for p in prompt]  # type: ignore[arg-type]


def _job(ticket: Ticket, kind: str, prompt: Work, params: SamplingParams,
         reply: str) -> Job:
    return Job(
        id=uuid.uuid4().hex,
        model=ticket.model.name,
        kind=kind,  # type: ignore[arg-type]
        prompt=prompt,
        params=params,
        priority=ticket.priority,
        created_at=ticket.created,
        deadline=ticket.deadline,
        reply_to=reply,
        request_id=ticket.request_id,
        tenant=ticket.tenant,
    )


def _unsupported(condition: bool, param: str, message: str) -> None:
    if condition:
        raise InvalidRequest(message, param=param)


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def prompt_job(ticket: Ticket, kind: str, prompt: Work, params: SamplingParams,
               reply_to: str) -> Job:
    """One job for work an endpoint built itself (the Ollama and Anthropic APIs, tokenize)."""
    return _job(ticket, kind, prompt, params, reply_to)
