"""The OpenAPI document: valid OpenAPI 3.1, and every route of the API in it with its bodies.

The schemathesis test (tests/integration) checks the document against what the
running router answers; these checks need no Redis.
"""

from __future__ import annotations

import msgspec
import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate

from raylane.cluster.errors import RaylaneError
from raylane.cluster.messages import Delta, Done, TokenLogprob, TopLogprob
from raylane.router import schemas
from raylane.router.admin_routes import admin_api
from raylane.router.anthropic_routes import anthropic_api
from raylane.router.ollama_routes import ollama_api
from raylane.router.openapi import OPERATIONS, document
from raylane.router.responses_routes import responses_api
from raylane.router.routes import api
from raylane.router.shapes import ChatShape, CompletionShape
from raylane.router.tools import ToolPlan

DOC = document("raylane", "0.0.0")
ROUTERS = (api, anthropic_api, responses_api, ollama_api)
ERROR_REFS = {op.path: f"#/components/schemas/{op.error.__name__}" for op in OPERATIONS}


def _routes(routers: tuple = ROUTERS) -> list[tuple[str, str]]:
    return [(method.lower(), route.path_format) for router in routers for route in router.routes
            if isinstance(route, APIRoute) for method in route.methods or ()]


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    validate(DOC)


def test_every_route_is_documented_and_nothing_else() -> None:
    documented = [(method, path) for path, item in DOC["paths"].items() for method in item]
    assert sorted(documented) == sorted(_routes())


@pytest.mark.parametrize(("method", "path"), _routes())
def test_each_route_has_its_bodies_and_errors(method: str, path: str) -> None:
    operation = DOC["paths"][path][method]
    responses = operation["responses"]
    assert "500" in responses
    for status, response in responses.items():
        assert response["headers"]["X-Request-ID"]["required"] is True
        if status != "200":
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REFS[path]}
    if path.startswith("/api/"):
        return  # the Ollama API: test_ollama_operations_are_documented_in_ollamas_terms
    assert "$ref" in responses["200"]["content"]["application/json"]["schema"]
    if method == "post":
        assert operation["requestBody"]["required"] is True
        assert "$ref" in operation["requestBody"]["content"]["application/json"]["schema"]
        streams = path in ("/v1/chat/completions", "/v1/completions", "/v1/messages",
                           "/v1/responses")
        assert ("text/event-stream" in responses["200"]["content"]) == streams
        assert {"400", "404", "413", "429", "503", "504"} <= set(responses)
        assert "Retry-After" in responses["429"]["headers"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"X-Priority", "X-Request-Timeout", "X-Request-ID"}


SECURED = document("raylane", "0.0.0", keys=True, admin=True)


def test_with_keys_every_route_but_health_needs_one_and_the_admin_routes_are_documented(
) -> None:
    validate(SECURED)
    documented = [(m, p) for p, item in SECURED["paths"].items() for m in item]
    assert sorted(documented) == sorted(_routes((*ROUTERS, admin_api)))
    assert set(SECURED["components"]["securitySchemes"]) == {"bearer", "x-api-key"}
    for method, path in documented:
        operation = SECURED["paths"][path][method]
        if path == "/health":
            assert "security" not in operation and "401" not in operation["responses"]
            continue
        assert operation["security"] == [{"bearer": []}, {"x-api-key": []}]
        assert "401" in operation["responses"]
        assert ("403" in operation["responses"]) == path.startswith("/admin/")


def test_admin_routes_alone_are_secured_when_keys_are_off() -> None:
    doc = document("raylane", "0.0.0", admin=True)
    secured = {p for p, item in doc["paths"].items() for op in item.values() if "security" in op}
    assert secured == {"/admin/keys", "/admin/keys/{name}", "/admin/keys/{name}/usage"}
    assert not any(p.startswith("/admin") for p in DOC["paths"])


OLLAMA_QUEUED = ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings")
OLLAMA_MANAGED = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete")


@pytest.mark.parametrize(("method", "path"),
                         [(m, p) for m, p in _routes() if p.startswith("/api/")])
def test_ollama_operations_are_documented_in_ollamas_terms(method: str, path: str) -> None:
    operation = DOC["paths"][path][method]
    responses = operation["responses"]
    if path in OLLAMA_MANAGED:  # they only ever answer that models come from the config
        assert set(responses) == {"400", "500"} and "requestBody" not in operation
        return
    assert "$ref" in responses["200"]["content"]["application/json"]["schema"]
    streams = path in ("/api/chat", "/api/generate")
    assert ("application/x-ndjson" in responses["200"]["content"]) == streams
    assert "text/event-stream" not in responses["200"]["content"]
    headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
    queued = {"X-Priority", "X-Request-Timeout"} if path in OLLAMA_QUEUED else set()
    assert headers == {"X-Request-ID", *queued}
    if path in OLLAMA_QUEUED:
        assert {"400", "404", "413", "429", "503", "504"} <= set(responses)
        assert operation["requestBody"]["required"] is True


def test_request_schemas_are_closed_like_the_decoder() -> None:
    for name in ("ChatCompletionRequest", "CompletionRequest", "ChatMessage", "MessagesRequest",
                 "AnthropicMessage", "TextBlock", "OllamaChatRequest", "OllamaGenerateRequest",
                 "OllamaOptions", "OllamaMessage", "OllamaEmbedRequest"):
        assert DOC["components"]["schemas"][name]["additionalProperties"] is False


# What shapes.py builds must be what schemas.py says, field for field: the
# response Structs forbid unknown fields, so `convert` fails on any drift.
LOGPROBS = [TokenLogprob(b"Hi", -0.1, [TopLogprob(b"Hi", -0.1), TopLogprob(b"\xe2", -3.0)])]
EVENTS = [Delta(text="Hi", tokens=1, logprobs=LOGPROBS), Delta(text=" there", tokens=1),
          Done(finish_reason="length", prompt_tokens=1, completion_tokens=2)]
NAMED = ToolPlan("named", ("f",), "f", "[]", "{}")
CHAT_SHAPES = [ChatShape(), ChatShape(logprobs=True), ChatShape(tools=NAMED)]


@pytest.mark.parametrize("shape", CHAT_SHAPES, ids=["plain", "logprobs", "tool call"])
def test_chat_choices_match_their_schema(shape: ChatShape) -> None:
    stream, whole = shape.choice(0), shape.choice(0)
    for i, event in enumerate(EVENTS):
        for choice in stream.chunks(event, first=i == 0):
            msgspec.convert(choice, schemas.ChatChunkChoice)
        whole.add(event)
    msgspec.convert(whole.final("stop"), schemas.ChatChoice)


@pytest.mark.parametrize("logprobs", [False, True])
def test_text_choices_match_their_schema(logprobs: bool) -> None:
    stream, whole = CompletionShape(logprobs).choice(1), CompletionShape(logprobs).choice(1)
    for i, event in enumerate(EVENTS):
        for choice in stream.chunks(event, first=i == 0):
            msgspec.convert(choice, schemas.TextChunkChoice)
        whole.add(event)
    msgspec.convert(whole.final("length"), schemas.TextChoice)


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]


@pytest.mark.parametrize("error", _subclasses(RaylaneError), ids=lambda c: c.__name__)
def test_every_error_body_matches_its_schema(error: type[RaylaneError]) -> None:
    body = {"error": {"message": "m", "type": error.type, "param": None, "code": error.code}}
    msgspec.convert(body, schemas.ErrorResponse)


def test_integers_sent_on_to_workers_are_bounded_in_the_document() -> None:
    # The queue's msgpack encoding holds 64-bit integers; larger ones are a 400, not a 500.
    components = DOC["components"]["schemas"]
    sampling = components["CompletionRequest"]["properties"]
    assert sampling["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
    assert sampling["max_tokens"]["anyOf"][0]["maximum"] == 2**63 - 1
    prompts = sampling["prompt"]["anyOf"][1]["items"]["anyOf"]
    token_ids = [p for p in prompts if p.get("type") == "integer"]
    token_ids += [p["items"] for p in prompts if p.get("type") == "array"]
    assert len(token_ids) == 2
    assert all(t["minimum"] == -(2**63) and t["maximum"] == 2**63 - 1 for t in token_ids)


NOT_SENT_ON = {f"post /api/{route}.options.{name}"
               for route in ("chat", "generate", "embed", "embeddings")
               for name in ("main_gpu", "mirostat", "num_batch", "num_ctx", "num_gpu", "num_keep",
                            "num_thread", "repeat_last_n")}
NOT_SENT_ON |= {"post /api/chat.messages[].tool_calls[].function.index",
                "post /api/generate.context[]", "post /api/generate.height",
                "post /api/generate.steps", "post /api/generate.width",
                "post /v1/completions.best_of"}
"""Integer fields that never reach a job or Redis: engine settings the config owns, and
fields refused unless at their neutral value."""


def _unbounded(node: object, path: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Where in a body's schema an integer may exceed a signed 64-bit one."""
    found: set[str] = set()
    if not isinstance(node, dict):
        return found
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return found
        return _unbounded(SECURED["components"]["schemas"][name], path, seen | {name})
    if node.get("type") == "integer" and node.get("maximum", 2**64) > 2**63 - 1:
        found.add(path)
    for name, sub in node.get("properties", {}).items():
        found |= _unbounded(sub, f"{path}.{name}", seen)
    for many in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(many, []):
            found |= _unbounded(sub, path, seen)
    for one, suffix in (("items", "[]"), ("additionalProperties", "")):
        found |= _unbounded(node.get(one), path + suffix, seen)
    return found


def test_every_integer_that_reaches_a_job_or_redis_is_bounded() -> None:
    """The queue's msgpack encoding holds 64-bit integers; a larger one is a 400, not a
    500. The key limits are counted in doubles, exact to 2**53."""
    found = set()
    for path, item in SECURED["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody")
            if body is not None:
                found |= _unbounded(body["content"]["application/json"]["schema"],
                                    f"{method} {path}")
    assert found == NOT_SENT_ON
    key = SECURED["components"]["schemas"]["CreateKey"]["properties"]
    assert key["rpm"]["maximum"] == key["tpm"]["maximum"] == 2**53
    assert key["max_priority"]["anyOf"][0]["maximum"] == 1_000_000

