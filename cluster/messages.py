"""Messages between router and workers: jobs going down, events coming back.

A `Job` is encoded once by the router and stored in Redis as the job's body;
workers decode it with the typed decoder below. Events travel in the router
replica's inbox stream: the stream entry's fields carry the envelope (request
id, attempt, event name) so Lua scripts can write some events themselves, and
`data` carries a msgspec-encoded body for the events that have one.

Every field added after the first release gets a default, so old and new
routers and workers can share a queue during a rolling upgrade.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

Priority = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
"""The range of a job's priority (lower is more urgent), as requests and API keys give it."""


class ToolCall(msgspec.Struct, kw_only=True, frozen=True):
    """A function call an assistant made earlier in the conversation."""

    id: str
    name: str
    arguments: str
    """The arguments as the caller sent them: JSON text."""


class Message(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    role: str
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] = []
    """The calls of an assistant message (its content may then be empty)."""
    tool_call_id: str | None = None
    """The call a `tool` message answers."""


class ChatPrompt(msgspec.Struct, tag="chat", frozen=True, omit_defaults=True):
    messages: list[Message]
    tools: str | None = None
    """The function tools offered to the model (OpenAI's `tools` list as JSON text), for
    the chat template; None when none are (or `tool_choice` is `none`)."""
    tools_forced: bool = False
    """The answer is constrained to a tool call (`SamplingParams.json_schema`): a template
    that cannot show tools gets them in a system message instead of a refusal."""


class TextPrompt(msgspec.Struct, tag="text", frozen=True):
    text: str


class TokenPrompt(msgspec.Struct, tag="tokens", frozen=True):
    tokens: list[int]


Prompt = ChatPrompt | TextPrompt | TokenPrompt


class EmbedInputs(msgspec.Struct, tag="embed", frozen=True):
    """The inputs of an embedding request: one vector is wanted for each."""

    inputs: list[TextPrompt | TokenPrompt]
    dimensions: int | None = None
    """The vector length the caller asked for (the model's own length is the only one
    served)."""


class TokenizeInputs(msgspec.Struct, tag="tokenize", frozen=True, omit_defaults=True):
    """A prompt to turn into the token ids a generation of it would begin from."""

    prompt: ChatPrompt | TextPrompt
    add_special_tokens: bool = True
    """A text prompt: with the tokens the tokenizer adds (a BOS). A chat prompt's template
    writes its own."""
    add_generation_prompt: bool = True
    """A chat prompt: with the opening of the assistant's turn, as generation renders it."""
    token_strs: bool = False
    """Also answer each token's text as the vocabulary spells it."""


class DetokenizeInputs(msgspec.Struct, tag="detokenize", frozen=True):
    """Token ids to turn back into text."""

    tokens: list[int]


Work = Prompt | EmbedInputs | TokenizeInputs | DetokenizeInputs
"""What a job asks of a worker."""


class SamplingParams(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """What the OpenAI API lets a caller set about generation."""

    max_tokens: int | None = None
    limit: int | None = None
    """Most completion tokens when max_tokens is unset (the model's configured cap)."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """Sample among the k likeliest tokens only; 0: all of them."""
    min_p: float = 0.0
    """Drop the tokens less likely than this share of the likeliest one's probability."""
    stop: list[str] = []
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    """vLLM's: the logits of tokens seen in the prompt or the answer so far are divided by
    it (when positive) or multiplied by it; 1: off."""
    json_object: bool = False
    """The answer must be one JSON object (`response_format` `json_object`)."""
    json_schema: str | None = None
    """The JSON Schema (as JSON text) the answer must match (`response_format`
    `json_schema`); the router has checked it is a valid schema."""
    choice: list[str] = []
    """The answer is exactly one of these strings (vLLM's `structured_outputs.choice`)."""
    regex: str | None = None
    """The answer matches this regular expression (`structured_outputs.regex`)."""
    grammar: str | None = None
    """The answer follows this grammar, in GBNF (`structured_outputs.grammar`)."""
    logprobs: int | None = None
    """Report each completion token's log probability and this many most likely
    alternatives (0-20); None: no log probabilities."""
    min_tokens: int = 0
    """End of text and stop strings do not end the answer before this many tokens."""
    ignore_eos: bool = False
    """End of text never ends the answer: only max_tokens, the context or a stop string."""
    logit_bias: dict[int, float] = {}
    """Added to these tokens' logits before sampling (-100 to 100); the worker checks the
    ids against its vocabulary."""
    echo: bool = False
    """The answer begins with the prompt (a completion's `echo`): the engine first sends the
    prompt's text as a delta of no completion tokens, with the log probabilities of the
    prompt's tokens when `logprobs` asks for them. `max_tokens` 0 then means the prompt
    alone."""


def constrained(params: SamplingParams) -> bool:
    """Whether decoding is constrained (a JSON answer, a choice, a regex or a grammar), so
    the answer ends where the constraint is satisfied."""
    return bool(params.json_object or params.json_schema is not None or params.choice
                or params.regex is not None or params.grammar is not None)


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """One unit of work for a worker: a prompt to complete for one caller."""

    id: str
    model: str
    kind: Literal["chat", "completion", "embedding", "tokenize"]
    prompt: Work
    """What to complete, or (kind `embedding`) what to embed, or (kind `tokenize`) what to
    tokenize or detokenize."""
    params: SamplingParams = SamplingParams()
    priority: int = 0
    created_at: float = 0.0
    deadline: float = 0.0
    """Wall-clock time (epoch seconds) after which nobody waits for this job."""
    reply_to: str = ""
    """The inbox stream of the router replica waiting for this job's events."""
    request_id: str = ""
    """The caller-visible request id, for logs."""
    tenant: str = ""
    """Who the job is for, as the fair-share scheduler counts: the API key's name, else
    the caller's `user`; within a priority, tenants take turns."""


class LeasedJob(msgspec.Struct, kw_only=True, frozen=True):
    """A job as a worker holds it: the job plus the claim that fences it."""

    job: Job
    token: str
    attempt: int


class Event(enum.StrEnum):
    """Names of the events in a router inbox."""

    STARTED = "started"  # a worker leased the job (attempt n)
    DELTA = "delta"  # generated text
    DONE = "done"  # generation finished normally
    ERROR = "error"  # the job failed; the body says how
    TIMEOUT = "timeout"  # the deadline passed while the job was queued
    REQUEUED = "requeued"  # the worker holding attempt n lost its lease
    DEAD = "dead"  # the job lost too many leases and was dead-lettered
    CANCELLED = "cancelled"  # the worker stopped the job after a cancel


class TopLogprob(msgspec.Struct, array_like=True, frozen=True):
    token: bytes
    """The token's bytes (a token may hold part of a UTF-8 character)."""
    logprob: float


class TokenLogprob(msgspec.Struct, array_like=True, frozen=True):
    """A token's log probability and the most likely tokens at its place."""

    token: bytes
    logprob: float | None
    """None for the first token of an echoed prompt, which nothing precedes."""
    top: list[TopLogprob] = []
    """Most likely first; as many as `SamplingParams.logprobs` asked for."""


class Delta(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    text: str
    tokens: int
    """Completion tokens this delta accounts for."""
    logprobs: list[TokenLogprob] | None = None
    """With `SamplingParams.logprobs`: those of the tokens generated since the last delta."""


class Done(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    text: str = ""
    """Text not yet sent in a delta (held back while a stop string was possible)."""
    worker: str = ""
    """The worker replica that generated the answer (`<pool>@<host>:<pid>:<tag>`)."""
    stop: str | None = None
    """The stop string that ended the text (finish_reason `stop`); None at end of text."""
    logprobs: list[TokenLogprob] | None = None
    """With `SamplingParams.logprobs`: those of the tokens no delta carried."""


class Embeddings(msgspec.Struct, kw_only=True, frozen=True):
    """The answer to an embedding job: one vector per input, in input order."""

    vectors: bytes
    """Every vector, little-endian float32, one after another (`count` times `dim` values)."""
    dim: int
    prompt_tokens: int

    @property
    def count(self) -> int:
        return len(self.vectors) // (4 * self.dim) if self.dim else 0


class Tokens(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The answer to a tokenize job: token ids, or (detokenize) their text."""

    tokens: list[int] = []
    strs: list[str] | None = None
    """With `TokenizeInputs.token_strs`: each token's text as the vocabulary spells it."""
    text: str = ""
    context_length: int = 0
    """Tokens of context one generation of the model may use."""


Answer = Done | Embeddings | Tokens
"""A job's last event: the whole answer (`isinstance(event, Answer)`)."""


class Failure(msgspec.Struct, kw_only=True, frozen=True):
    """An error a worker reports; `kind` maps to an HTTP status in the router."""

    kind: Literal["invalid_request", "context_length", "engine", "internal"]
    message: str
    param: str | None = None


job_encoder = msgspec.msgpack.Encoder()
job_decoder = msgspec.msgpack.Decoder(Job)
event_encoder = msgspec.json.Encoder()
delta_decoder = msgspec.json.Decoder(Delta)
done_decoder = msgspec.json.Decoder(Done)
embeddings_decoder = msgspec.json.Decoder(Embeddings)
tokens_decoder = msgspec.json.Decoder(Tokens)
failure_decoder = msgspec.json.Decoder(Failure)
