"""OpenAI request bodies as msgspec Structs: the exact shapes the router accepts.

Fields the router honours are typed and bounded here; fields OpenAI clients
commonly send with their neutral value (`store`, `metadata`) are
accepted; anything else is rejected with the field named, never ignored.
Responses are built as plain dicts in the endpoint modules, in OpenAI's shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from raylane.cluster.messages import Priority

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
# Integers that travel to the workers inside a job must fit its msgpack encoding.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TopK = Annotated[int, Meta(ge=-1, le=INT64_MAX)]
"""vLLM's: -1 or 0 for all tokens."""
MinP = Annotated[float, Meta(ge=0.0, le=1.0)]
Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
MaxTokens = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Stop = str | Annotated[list[str], Meta(max_length=4)] | None
MAX_N = 16
MAX_CHOICES = 256
"""Most strings `structured_outputs.choice` may list."""
Choices = Annotated[int, Meta(ge=1, le=MAX_N)]
"""`n`: answers per prompt, each its own job (they count against the prompts limit)."""
Role = Literal["system", "developer", "user", "assistant", "tool"]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A request body: unknown fields are errors."""


class TextPart(Strict, kw_only=True):
    type: Literal["text"]
    text: str


ToolName = Annotated[str, Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
MAX_TOOLS = 128


class FunctionCall(Strict, kw_only=True):
    name: str
    arguments: str
    """JSON text, as the model wrote it."""


class ToolCall(Strict, kw_only=True):
    """A call an assistant message made, sent back as part of the conversation."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(Strict, kw_only=True):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    """The call a `tool` message answers (required there)."""
    tool_calls: list[ToolCall] | None = None
    """The calls an `assistant` message made."""

    def text(self) -> str:
        """The message's content as one string."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(Strict, kw_only=True):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class TextFormat(Strict, kw_only=True, tag="text", tag_field="type"):
    """Plain text (the default)."""


class JsonObjectFormat(Strict, kw_only=True, tag="json_object", tag_field="type"):
    """The answer is one JSON object (any keys)."""


class JsonSchema(Strict, kw_only=True):
    name: Annotated[str, Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema: dict[str, Any] | None = None
    """The JSON Schema the answer must match; absent, any JSON value."""
    strict: bool | None = None
    """Accepted either way: the engines always constrain decoding to the schema."""


class JsonSchemaFormat(Strict, kw_only=True, tag="json_schema", tag_field="type"):
    """The answer is JSON matching `json_schema.schema`."""

    json_schema: JsonSchema


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


class FunctionDefinition(Strict, kw_only=True):
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The JSON Schema of the arguments (an object); absent, the function takes none."""
    strict: bool | None = None
    """Accepted either way: a forced call is always constrained to the schema."""


class Tool(Strict, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(Strict, kw_only=True):
    name: str


class NamedToolChoice(Strict, kw_only=True):
    """Call this function."""

    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
CompletionLogprobs = Annotated[int, Meta(ge=0, le=5)]


class StructuredOutputs(Strict, kw_only=True):
    """vLLM's extension: constrain decoding to exactly one of these."""

    choice: Annotated[list[Annotated[str, Meta(min_length=1)]],
                      Meta(min_length=1, max_length=MAX_CHOICES)] | None = None
    """The answer is one of these strings."""
    regex: Annotated[str, Meta(min_length=1)] | None = None
    """The answer matches this regular expression (vLLM only)."""
    grammar: Annotated[str, Meta(min_length=1)] | None = None
    """The answer follows this grammar, in GBNF (llama.cpp's, which vLLM's xgrammar reads)."""
    json: dict[str, Any] | str | None = None
    """The answer is JSON matching this JSON Schema (an object, or its JSON text)."""
    json_object: bool | None = None
    """The answer is one JSON object."""


class Sampling(Strict, kw_only=True):
    """Fields shared by chat and text completions."""

    model: str
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Stop = None
    seed: Int64 | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Choices = 1
    user: str | None = None
    priority: Priority | None = None
    """vLLM's extension: lower is more urgent."""
    logit_bias: dict[str, float] | None = None
    top_k: TopK | None = None
    """vLLM's extension: sample among the k likeliest tokens (-1 or 0: all)."""
    min_p: MinP | None = None
    """vLLM's extension: drop tokens below this share of the likeliest one's probability."""
    repetition_penalty: Annotated[float, Meta(gt=0.0, le=100.0)] | None = None
    """vLLM's extension: above 1, tokens already in the prompt or the answer are less
    likely; below 1, more."""
    min_tokens: Annotated[int, Meta(ge=0, le=INT64_MAX)] | None = None
    """vLLM's extension: neither end of text nor a stop string ends the answer before
    this many tokens."""
    ignore_eos: bool | None = None
    """vLLM's extension: generate past the end of text, up to max_tokens (benchmarks)."""
    structured_outputs: StructuredOutputs | None = None
    """vLLM's extension: a choice, a regex, a grammar or JSON the answer must follow."""


class ChatCompletionRequest(Sampling, kw_only=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    """Alternatives reported per token; needs `logprobs: true`."""
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    """With tools, `auto` by default."""
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None
    parallel_tool_calls: bool | None = None
    """False: a forced (`required`) answer makes one call, not one or more."""
    store: bool | None = None
    metadata: dict[str, str] | None = None


Prompt = str | list[str | Int64 | list[Int64]]
"""A string, strings, token ids, or lists of token ids (one prompt each)."""


class CompletionRequest(Sampling, kw_only=True):
    prompt: Prompt
    max_tokens: Annotated[int, Meta(ge=0, le=INT64_MAX)] | None = None
    """16 if unset; 0 only with `echo` (the prompt alone, with its log probabilities)."""
    echo: bool | None = None
    """The answer's text (and log probabilities) begin with the prompt's."""
    logprobs: CompletionLogprobs | None = None
    """Report each token's log probability and this many alternatives."""
    best_of: int | None = None
    suffix: str | None = None


EmbeddingInput = Annotated[str, Meta(min_length=1)] | Annotated[
    list[Annotated[str, Meta(min_length=1)] | Int64 | Annotated[list[Int64], Meta(min_length=1)]],
    Meta(min_length=1, max_length=2048),
]
"""A string, strings, token ids, or lists of token ids (one vector each), as OpenAI takes;
none empty, at most 2048 inputs."""


class EmbeddingRequest(Strict, kw_only=True):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1, le=65536)] | None = None
    user: str | None = None
    priority: Priority | None = None
    """vLLM's extension: lower is more urgent."""


class TokenizeRequest(Strict, kw_only=True):
    """vLLM's `POST /tokenize`: a text `prompt`, or chat `messages` as a chat completion
    request carries them (exactly one of the two)."""

    model: str | None = None
    """Optional where one model is served, as in vLLM."""
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Meta(min_length=1)] | None = None
    add_special_tokens: bool | None = None
    """A prompt: add the tokenizer's special tokens, such as a BOS (the default, as a
    completion does). Messages: the chat template writes them (true is refused)."""
    add_generation_prompt: bool = True
    """Messages: open the assistant's turn, as a chat completion does."""
    continue_final_message: bool = False
    """Accepted at its default only."""
    return_token_strs: bool | None = False
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None
    """Messages: the tools the chat template shows the model (as `tool_choice: auto`)."""
    priority: Priority | None = None


class DetokenizeRequest(Strict, kw_only=True):
    """vLLM's `POST /detokenize`."""

    model: str | None = None
    tokens: list[Annotated[int, Meta(ge=0, le=INT64_MAX)]]
    priority: Priority | None = None
