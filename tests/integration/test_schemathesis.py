"""Schemathesis against the real router app: every answer is what `/openapi.json` says.

The app is `build_app` over a real `RouterState` (real Redis, real inbox reader)
with a `sim` worker's pull loop beside it, so generation requests are answered,
streamed or refused exactly as in a cluster, without Ray. It runs twice: open,
and with API keys on and an admin key (the admin routes in the document, every
request sent with a key, and schemathesis' `ignored_auth` check resending it
without one, which must be refused). Schemathesis generates
requests from the document (valid and invalid ones) and checks each answer:
no server error but a deadline the request itself asked for, a documented
status, content type and headers, and a body that matches the schema (each
event of a stream included).

CI runs a short pass (50 generated requests per operation and mode, seconds).
The longer one, worth running after any change to the API (500 per operation
and mode, about a minute on two cores):

    RAYLANE_SCHEMATHESIS_EXAMPLES=500 .venv/bin/python -m pytest \
        tests/integration/test_schemathesis.py --timeout 3600
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import timedelta
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from schemathesis import GenerationMode
from schemathesis.python import asgi

from raylane.cluster.apikeys import ApiKey, KeyStore
from raylane.cluster.backends import options_for
from raylane.cluster.config import AuthConfig, Config, ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.keys import Keys
from raylane.cluster.redis_server import RedisServer
from raylane.router.app import build_app
from raylane.router.openapi import operations
from raylane.router.state import RouterState
from raylane.workers.pull import PullLoop
from raylane.workers.sim import SimEngine
from tests.conftest import REDIS_BINARIES

EXAMPLES = int(os.environ.get("RAYLANE_SCHEMATHESIS_EXAMPLES", "50"))
"""Generated requests per operation, for valid and for invalid input each."""
DEADLINE = timedelta(seconds=5)
"""Longest one request may take; the sim answers in milliseconds."""

# A fast sim with a small context: whatever max_tokens the fuzzer picks, a
# generation is at most N_CTX tokens at 50k tokens/s (larger ones are refused
# with context_length_exceeded), so every answer comes within milliseconds.
N_CTX = 256
POOL = PoolConfig(backend="sim", slots=8, resources={"CPU": 0.0},
                  options={"tokens_per_s": 50_000, "n_ctx": N_CTX})
MODEL = ModelConfig(name="sim", aliases=["sim/alias"], queue=QueueConfig(timeout_s=10),
                    pools=[POOL])
CONFIG = Config(models=[MODEL])
SERVED = [MODEL.name, *MODEL.aliases]
ADMIN_ENV = "RAYLANE_SCHEMATHESIS_ADMIN_KEY"
ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
SECURED = Config(models=[MODEL], auth=AuthConfig(enabled=True, admin_key_env=ADMIN_ENV))

# Options the router refuses with 400, or that a fuzzed body rarely gets right (token
# ids, tool plans, log probabilities); a body without them, naming a served model,
# reaches the sim worker.
REFUSED = ("logit_bias", "tools", "logprobs", "top_logprobs", "best_of", "suffix",
           "tool_choice", "thinking", "top_k")
# ... and on the Ollama API (as are `options` that switch on a sampler raylane lacks).
REFUSED += ("think", "format", "images", "template", "context", "width", "height", "steps")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SimRouter:
    """The router's ASGI app and a sim worker, started in the event loop that serves them.

    Schemathesis serves an ASGI app from an event loop thread of its own. Redis
    clients, the inbox reader and the pull loop belong to one loop, so they are
    started by the app's lifespan (which schemathesis runs in that loop), not by
    a pytest fixture.
    """

    def __init__(self, redis_url: str, config: Config) -> None:
        self.redis_url = redis_url
        self.config = config
        self.key = ""
        """With API keys on, the key every request is sent with."""
        self.prefix = f"st{uuid.uuid4().hex[:8]}"
        self.answers: Counter[tuple[str, int, str]] = Counter()
        """(operation, status, media type) of every answer, to check what was reached."""
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._state: RouterState | None = None
        self._worker: PullLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self._app is not None, "the lifespan has not started"
            await self._app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        self._state = await RouterState.open(self.config, self.redis_url, self.prefix)
        engine = SimEngine(options_for("sim", POOL.options))
        self._worker = PullLoop(self._state.queue, engine, MODEL, POOL, "sim-0", "w0")
        self._worker.start()
        self._app = build_app(self._state)

    async def _stop(self) -> None:
        # A shutdown that hangs would hang schemathesis' event loop thread, and the run with
        # it, with no word of where: it is given STOP_S, then the stacks of every task are
        # kept for the next test to fail with.
        stopping = asyncio.ensure_future(self._stop_both())
        if not (await asyncio.wait({stopping}, timeout=STOP_S))[0]:
            STUCK.append(_task_stacks())
            stopping.cancel()
            return
        stopping.result()

    async def _stop_both(self) -> None:
        if self._worker is not None:
            await self._worker.stop(grace_s=1.0)
        if self._state is not None:
            await self._state.close()


STOP_S = 30.0
"""Longest a router and its worker may take to stop."""
STUCK: list[str] = []
"""The task stacks of each stop that did not finish in time."""


def _task_stacks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=out)
    return out.getvalue()


class Fuzzed:
    """The two routers under test, each started on first use: "open", and "keys" (API keys
    on, an admin key set)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.started: dict[str, tuple[SimRouter, schemathesis.BaseSchema]] = {}

    def __call__(self, variant: str) -> tuple[SimRouter, schemathesis.BaseSchema]:
        if variant not in self.started:
            app = SimRouter(self.redis_url, SECURED if variant == "keys" else CONFIG)
            if variant == "keys":  # before the schema is loaded: /openapi.json needs it too
                app.key = asyncio.run(_create_key(self.redis_url, app.prefix))
            self.started[variant] = app, _schema(app)
        return self.started[variant]


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    """The routers, on one redis-server (the last version here): what they answer does not
    depend on Redis's version, which the queue's own tests cover."""
    os.environ[ADMIN_ENV] = ADMIN_KEY  # read by the "keys" router's app when it is built
    try:
        with RedisServer(binary=REDIS_BINARIES[-1][1]) as redis_server:
            try:
                yield Fuzzed(redis_server.url)
            finally:
                asgi.shutdown_lifespans()  # stop the workers and inboxes before Redis goes
    finally:
        os.environ.pop(ADMIN_ENV, None)


async def _create_key(redis_url: str, prefix: str) -> str:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        return await KeyStore(redis, Keys(prefix)).create(ApiKey(name="fuzzer"))
    finally:
        await redis.aclose()


def _schema(sim_router: SimRouter) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({
        # The only server error a request may cause here is the deadline it set itself
        # (X-Request-Timeout): Redis is up and the sim engine cannot fail.
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "4xx", "504"]}},
        # Show failing requests as sent: `max_tokens` is no secret despite its name.
        "output": {"sanitization": {"enabled": False}},
    })
    headers = {"Authorization": f"Bearer {sim_router.key}"} if sim_router.key else {}
    schema = schemathesis.openapi.from_asgi("/openapi.json", sim_router, config=config,
                                            headers=headers)
    schema.hook(flatmap_body)
    schema.hook(flatmap_path_parameters)
    return schema


# Schema hooks: schemathesis finds them by their function names.
def flatmap_body(_: object, body: Any) -> st.SearchStrategy[Any]:
    """Steer generated bodies to a served model, so most reach the worker, half streamed."""
    if not isinstance(body, dict) or "model" not in body:
        return st.just(body)
    served = {k: v for k, v in body.items() if k not in REFUSED} | {"model": MODEL.name}
    return st.one_of(
        st.booleans().map(lambda stream: {**served, "stream": stream}),
        st.sampled_from([{**body, "model": SERVED[1]}, body]),
    )


def flatmap_path_parameters(_: object, parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Ask for served models too, not only for random names."""
    if not parameters or "model" not in parameters:
        return st.just(parameters)
    return st.sampled_from([*({**parameters, "model": name} for name in SERVED), parameters])


CHECKS = [
    schemathesis.checks.ignored_auth,
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
CASES = [
    (variant, f"{op.method.upper()} {op.path}", mode)
    for variant in ("open", "keys")
    for op in operations(admin=variant == "keys")
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or op.body is not None
]

# Requests every run starts with, whatever the fuzzer draws: each kind of success
# (whole and streamed, with the usage chunk, several prompts) and a refusal.
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "one two three"}]}
TEXT = {"model": "sim/alias", "prompt": ["one two", "three"], "max_tokens": 3}
STREAM = {"stream": True, "stream_options": {"include_usage": True}}
MESSAGE = {"model": "sim", "max_tokens": 4, "system": "Be brief.",
           "messages": [{"role": "user", "content": "one two three"}]}
OLLAMA_TEXT = {"model": "sim", "prompt": "one two", "options": {"num_predict": 3}}
RESPONSE = {"model": "sim", "max_output_tokens": 4, "instructions": "Be brief.",
            "input": [{"role": "user", "content": "one two three"},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c", "output": "four"}]}
JSON = "application/json"
NDJSON = "application/x-ndjson"
EXPLICIT: dict[str, list[dict[str, Any]]] = {
    "POST /v1/chat/completions": [{"body": CHAT, "media_type": JSON},
                                  {"body": CHAT | STREAM, "media_type": JSON}],
    "POST /v1/completions": [{"body": TEXT, "media_type": JSON},
                             {"body": TEXT | STREAM, "media_type": JSON}],
    "POST /v1/messages": [{"body": MESSAGE, "media_type": JSON},
                          {"body": MESSAGE | {"stream": True}, "media_type": JSON},
                          {"body": MESSAGE | {"model": "unknown"}, "media_type": JSON}],
    "POST /v1/responses": [{"body": RESPONSE, "media_type": JSON},
                           {"body": RESPONSE | {"stream": True}, "media_type": JSON},
                           {"body": RESPONSE | {"previous_response_id": "r"},
                            "media_type": JSON}],
    # Ollama streams unless told not to.
    "POST /api/chat": [{"body": CHAT, "media_type": JSON},
                       {"body": CHAT | {"stream": False}, "media_type": JSON}],
    "POST /api/generate": [{"body": OLLAMA_TEXT, "media_type": JSON},
                           {"body": OLLAMA_TEXT | {"stream": False, "raw": True},
                            "media_type": JSON}],
    "GET /v1/models/{model}": [{"path_parameters": {"model": name}}
                               for name in (*SERVED, "unknown")],
    "POST /tokenize": [{"body": {"prompt": "one two"}, "media_type": JSON},
                       {"body": CHAT | {"return_token_strs": True}, "media_type": JSON}],
    "POST /v1/messages/count_tokens": [{"body": {k: v for k, v in MESSAGE.items()
                                                 if k != "max_tokens"}, "media_type": JSON}],
}


def check_ndjson(label: str, content: bytes) -> None:
    """Schemathesis reads no NDJSON: decode each line with the Structs the document comes
    from (one answer piece, or the error line), which reject any field they do not list."""
    op = next(op for op in operations() if f"{op.method.upper()} {op.path}" == label)
    lines = content.splitlines()
    assert lines, "an empty stream"
    for line in lines:
        body = msgspec.json.decode(line)
        msgspec.convert(body, type=op.error if "error" in body else op.chunk)


# schemathesis' own pytest integration (`@schema.parametrize`) relies on pytest
# internals that pytest 9.2 removed, so the cases are drawn with plain Hypothesis.
@pytest.mark.parametrize(("variant", "label", "mode"), CASES)
def test_the_router_answers_as_documented(
    fuzzed: Fuzzed, variant: str, label: str, mode: GenerationMode
) -> None:
    assert not STUCK, "an earlier test's router did not stop:\n" + STUCK[0]
    sim_router, api = fuzzed(variant)
    operation = api.find_operation_by_label(label)
    assert operation is not None
    key = ADMIN_KEY if "/admin/" in label else sim_router.key
    headers = {"Authorization": f"Bearer {key}"} if key else None

    def answers_as_documented(case: schemathesis.Case) -> None:
        response = case.call_and_validate(timeout=10, checks=CHECKS, headers=headers)
        media = response.headers.get("content-type", [""])[0].split(";")[0]
        sim_router.answers[label, response.status_code, media] += 1
        if media == NDJSON:
            check_ndjson(label, response.content)

    test = given(case=operation.as_strategy(generation_mode=mode))(answers_as_documented)
    if mode == GenerationMode.POSITIVE:
        for fields in EXPLICIT.get(label, []):
            test = example(case=operation.Case(**fields))(test)
    settings(max_examples=EXAMPLES, deadline=DEADLINE, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])(test)()


@pytest.mark.parametrize("variant", ["open", "keys"])
def test_the_fuzzer_reached_every_answer_kind(fuzzed: Fuzzed, variant: str) -> None:
    """Guards the test above against passing with a broken worker (504 is allowed there) or
    a key refused everywhere."""
    answers = fuzzed(variant)[0].answers
    if not answers:
        pytest.skip("runs after test_the_router_answers_as_documented")
    for operation in ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/messages",
                      "POST /v1/responses"):
        assert answers[operation, 200, JSON], answers
        assert answers[operation, 200, "text/event-stream"], answers
        assert answers[operation, 400, JSON], answers
    for operation in ("POST /api/chat", "POST /api/generate"):
        assert answers[operation, 200, JSON], answers
        assert answers[operation, 200, NDJSON], answers
        assert answers[operation, 400, JSON], answers
    for operation in ("POST /tokenize", "POST /v1/messages/count_tokens"):
        assert answers[operation, 200, JSON], answers
        assert answers[operation, 400, JSON], answers
    assert answers["GET /v1/models/{model}", 200, JSON], answers
    assert answers["GET /v1/models/{model}", 404, JSON], answers
    if variant == "keys":
        assert answers["POST /admin/keys", 200, JSON], answers
        assert answers["GET /admin/keys", 200, JSON], answers
        assert answers["DELETE /admin/keys/{name}", 404, JSON], answers
