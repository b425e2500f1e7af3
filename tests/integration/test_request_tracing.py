"""Request ids, timings and queue positions, as a client and an operator see them.

The router's HTTP app runs over the harness (a real redis-server, sim workers whose
speed the tests set, no Ray): `X-Request-ID` on every answer and in the router's and
the worker's log lines (never with the prompt, the answer or the API key), the `timings`
field and the queue-wait header, and the SSE comments a waiting stream gets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import httpx
import httpx2
import msgspec
import openai
import pytest

from raylane.cluster.apikeys import ApiKey
from raylane.cluster.config import AuthConfig, RouterConfig
from raylane.cluster.logs import JsonLines
from raylane.router.app import build_app
from raylane.router.state import RouterState
from tests.integration.harness import Cluster, start_cluster

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "zebra quartz"}],
        "max_tokens": 4}
POSITION = re.compile(r"^: queue position (\d+)(, estimated wait \d+\.\d s)?$")


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = start_cluster()
    yield c
    await c.close()


async def serve(cluster: Cluster, every_s: float = 0.2, auth: bool = False
                ) -> tuple[RouterState, httpx.AsyncClient]:
    """A router replica (queue-position comments every `every_s`) and an HTTP client."""
    cluster.config = msgspec.structs.replace(
        cluster.config, router=RouterConfig(queue_position_interval_s=every_s),
        auth=AuthConfig(enabled=auth))
    router = await cluster.router()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(router)),
                             base_url="http://raylane", timeout=30)
    return router, http


def sse(text: str) -> tuple[list[str], list[dict]]:
    """The comment lines and the JSON data events of an SSE body."""
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith(":")]
    data = [json.loads(line[6:]) for line in lines
            if line.startswith("data: ") and line != "data: [DONE]"]
    return comments, data


def keeper(raw: list[bytes]) -> Callable[[Any], Awaitable[None]]:
    """An HTTP client's response hook that keeps each raw body (the SDK still reads it)."""
    async def keep(response: httpx.Response | httpx2.Response) -> None:
        raw.append(await response.aread())
    return keep


async def saturate(router: RouterState, http: httpx.AsyncClient, count: int,
                   max_tokens: int = 10) -> list[asyncio.Task[httpx.Response]]:
    """`count` requests that hold the one-slot worker, all queued or running on return."""
    body = {"model": "sim", "prompt": "busy", "max_tokens": max_tokens}
    tasks = [asyncio.create_task(http.post("/v1/completions", json=body)) for _ in range(count)]
    while await router.queue.depth("sim") + await router.queue.leased("sim") < count:
        await asyncio.sleep(0.01)
    return tasks


async def test_the_callers_request_id_is_returned_and_names_the_answer(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=500)
    _, http = await serve(cluster)
    async with http:
        chat = await http.post("/v1/chat/completions", json=CHAT,
                               headers={"X-Request-ID": "order-42.retry:1"})
        assert chat.status_code == 200, chat.text
        assert chat.headers["x-request-id"] == "order-42.retry:1"
        assert chat.json()["id"] == "chatcmpl-order-42.retry:1"
        message = await http.post("/v1/messages", headers={"X-Request-ID": "m-1"}, json={
            "model": "sim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
        assert message.headers["x-request-id"] == "m-1" and message.json()["id"] == "msg_m-1"
        ollama = await http.post("/api/chat", headers={"X-Request-ID": "o-1"}, json={
            "model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert ollama.status_code == 200 and ollama.headers["x-request-id"] == "o-1"
        embedded = await http.post("/v1/embeddings", json={"model": "sim", "input": "hi"},
                                   headers={"X-Request-ID": "e-1"})
        assert embedded.headers["x-request-id"] == "e-1"


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "has space", "naïve"])
async def test_a_missing_or_invalid_request_id_is_replaced_by_a_new_one(
    cluster: Cluster, sent: str | None,
) -> None:
    cluster.worker(tokens_per_s=500)
    _, http = await serve(cluster)
    headers = {} if sent is None else {"X-Request-ID": sent.encode()}
    async with http:
        answers = [await http.post("/v1/chat/completions", json=CHAT, headers=headers)
                   for _ in range(2)]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    assert [a.json()["id"] for a in answers] == [f"chatcmpl-{i}" for i in ids]


async def test_errors_and_streams_carry_the_request_id_on_every_api(cluster: Cluster) -> None:
    _, http = await serve(cluster, auth=True)
    async with http:
        refused = await http.post("/v1/chat/completions", json=CHAT,
                                  headers={"X-Request-ID": "no-key"})
        assert refused.status_code == 401 and refused.headers["x-request-id"] == "no-key"
    cluster.worker(tokens_per_s=500)
    _, http = await serve(cluster)
    cases: list[tuple[str, dict | bytes, int]] = [
        ("/v1/chat/completions", {**CHAT, "model": "nope"}, 404),
        ("/v1/completions", b"{not json", 400),
        ("/v1/messages", {"model": "sim", "messages": []}, 400),
        ("/api/generate", {"model": "nope", "prompt": "hi"}, 404),
        ("/v1/chat/completions", {**CHAT, "stream": True}, 200),
        ("/v1/messages", {"model": "sim", "max_tokens": 3, "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]}, 200),
    ]
    async with http:
        for i, (path, body, status) in enumerate(cases):
            sent = {"content": body} if isinstance(body, bytes) else {"json": body}
            answer = await http.post(path, headers={"X-Request-ID": f"case-{i}"}, **sent)
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["x-request-id"] == f"case-{i}", path


async def test_logs_name_the_request_in_router_and_worker_without_text_or_key(
    cluster: Cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    cluster.worker(tokens_per_s=500)
    router, http = await serve(cluster, auth=True)
    secret = await router.key_store.create(ApiKey(name="tracer"))
    caplog.set_level(logging.INFO, logger="raylane")
    async with http:
        answer = await http.post("/v1/chat/completions", json=CHAT, headers={
            "X-Request-ID": "trace-7", "Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.text
    assert "zebra" in answer.json()["choices"][0]["message"]["content"]
    await asyncio.sleep(0.1)  # the worker's last line follows its final event
    lines = [json.loads(JsonLines().format(r)) for r in caplog.records]
    ours = [line for line in lines if line.get("request_id") == "trace-7"]
    said = {(line["logger"], line["msg"]) for line in ours}
    assert {("raylane.router", "request finished"), ("raylane.worker", "job started"),
            ("raylane.worker", "job finished")} <= said
    finished = next(line for line in ours if line["msg"] == "request finished")
    assert finished["outcome"] == "ok" and finished["model"] == "sim"
    assert finished["ttft_ms"] <= finished["total_ms"]
    worker_end = next(line for line in ours if line["msg"] == "job finished")
    assert worker_end["outcome"] == "done" and worker_end["attempt"] == 1
    text = "\n".join(json.dumps(line) for line in lines)
    for private in ("zebra", "quartz", secret):
        assert private not in text


async def test_timings_show_the_queue_wait_of_a_saturated_model(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=40, slots=1)
    router, http = await serve(cluster)
    async with http:
        idle = await http.post("/v1/chat/completions", json=CHAT)
        blockers = await saturate(router, http, 2)
        waited = await http.post("/v1/chat/completions", json=CHAT)
        await asyncio.gather(*blockers)
    for answer in (idle, waited):
        timings = answer.json()["timings"]
        assert set(timings) == {"queue_ms", "ttft_ms", "generation_ms", "total_ms"}
        assert timings["queue_ms"] <= timings["ttft_ms"] <= timings["total_ms"]
        assert 0 < timings["generation_ms"] <= timings["total_ms"]
        assert answer.headers["x-raylane-queue-wait-ms"] == str(round(timings["queue_ms"]))
    # two 10-token answers at 40 tokens/s ran first: at least 450 ms of waiting
    assert waited.json()["timings"]["queue_ms"] > 400
    assert idle.json()["timings"]["queue_ms"] < waited.json()["timings"]["queue_ms"] - 200


async def test_every_non_streaming_answer_carries_the_queue_wait(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=500)
    _, http = await serve(cluster)
    hi = [{"role": "user", "content": "hi"}]
    calls = [("/v1/chat/completions", CHAT), ("/v1/completions", {"model": "sim", "prompt": "a"}),
             ("/v1/embeddings", {"model": "sim", "input": "a"}),
             ("/v1/messages", {"model": "sim", "max_tokens": 2, "messages": hi}),
             ("/api/chat", {"model": "sim", "stream": False, "messages": hi}),
             ("/api/generate", {"model": "sim", "stream": False, "prompt": "a"}),
             ("/api/embed", {"model": "sim", "input": "a"})]
    async with http:
        for path, body in calls:
            answer = await http.post(path, json=body)
            assert answer.status_code == 200, (path, answer.text)
            assert 0 <= int(answer.headers["x-raylane-queue-wait-ms"]) < 10_000, path


async def test_a_waiting_stream_hears_its_queue_position_fall(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=40, slots=1)
    router, http = await serve(cluster, every_s=0.1)
    async with http:
        await http.post("/v1/completions", json={"model": "sim", "prompt": "warm"})
        blockers = await saturate(router, http, 3)
        answer = await http.post("/v1/chat/completions", json={
            **CHAT, "stream": True, "stream_options": {"include_usage": True}})
        await asyncio.gather(*blockers)
    comments, data = sse(answer.text)
    matches = [POSITION.match(c) for c in comments]
    assert comments and all(matches), comments
    positions = [int(m.group(1)) for m in matches if m]
    assert positions == sorted(positions, reverse=True) and positions[-1] == 1
    assert len(set(positions)) >= 2, positions
    assert all(m.group(2) for m in matches if m), comments  # a drain rate was measured
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data if c["choices"])
    assert text.startswith("zebra")
    assert data[-1]["timings"]["queue_ms"] > 300 and data[-1]["usage"]["completion_tokens"] == 4


async def test_the_openai_sdk_reads_a_stream_with_comments_and_timings(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=40, slots=1)
    router, http = await serve(cluster, every_s=0.1)
    raw: list[bytes] = []
    http.event_hooks["response"] = [keeper(raw)]
    client = openai.AsyncOpenAI(base_url="http://raylane/v1", api_key="none", http_client=http,
                                max_retries=0)
    async with client:
        blockers = await saturate(router, http, 2)
        stream = await client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "zebra"}], max_tokens=3,
            stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        whole = await client.chat.completions.with_raw_response.create(
            model="sim", messages=[{"role": "user", "content": "zebra"}], max_tokens=3)
        await asyncio.gather(*blockers)
    assert b": queue position" in raw[-2], "the stream waited without any comment"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "zebra zebra zebra"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    timings = (chunks[-1].model_extra or {})["timings"]
    assert timings["queue_ms"] > 0 and timings["ttft_ms"] <= timings["total_ms"]
    parsed = whole.parse()
    assert parsed.choices[0].message.content == "zebra zebra zebra"
    assert (parsed.model_extra or {})["timings"]["total_ms"] > 0
    assert int(whole.headers["x-raylane-queue-wait-ms"]) >= 0
    assert whole.headers["x-request-id"] == parsed.id.removeprefix("chatcmpl-")


async def test_the_anthropic_sdk_reads_a_stream_with_comments(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=40, slots=1)
    router, http = await serve(cluster, every_s=0.1)
    raw: list[bytes] = []
    # the Anthropic SDK speaks through httpx2, the OpenAI SDK through httpx
    sdk_http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=build_app(router)),
                                  event_hooks={"response": [keeper(raw)]})
    client = anthropic.AsyncAnthropic(base_url="http://raylane", api_key="none",
                                      http_client=sdk_http, max_retries=0)
    async with client:
        blockers = await saturate(router, http, 2)
        stream = await client.messages.create(
            model="sim", max_tokens=3, stream=True,
            messages=[{"role": "user", "content": "zebra"}])
        events = [event async for event in stream]
        await asyncio.gather(*blockers)
    await http.aclose()
    assert raw[-1].startswith(b": queue position"), raw[-1][:80]
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "zebra zebra zebra"


async def test_without_usage_the_last_chunk_carries_the_timings(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=500)
    _, http = await serve(cluster)
    async with http:
        answer = await http.post("/v1/completions", json={
            "model": "sim", "prompt": "a b", "max_tokens": 3, "n": 2, "stream": True})
    _, data = sse(answer.text)
    assert ["timings" in chunk for chunk in data] == [False] * (len(data) - 1) + [True]
    assert data[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_an_error_before_the_first_comment_is_a_plain_http_error(
    cluster: Cluster, path: str,
) -> None:
    cluster.worker(tokens_per_s=20, slots=1)
    router, http = await serve(cluster, every_s=1.0)
    async with http:
        blockers = await saturate(router, http, 2, max_tokens=20)
        answer = await http.post(path, headers={"X-Request-Timeout": "0.5"}, json={
            **CHAT, "stream": True})
        await asyncio.gather(*blockers)
    assert answer.status_code == 504, answer.text
    assert "queue" in answer.text and not answer.text.startswith(":")


async def test_an_error_after_the_comments_began_is_an_error_event(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=20, slots=1)
    router, http = await serve(cluster, every_s=0.2)
    async with http:
        blockers = await saturate(router, http, 2, max_tokens=20)
        answer = await http.post("/v1/chat/completions", headers={"X-Request-Timeout": "1"},
                                 json={**CHAT, "stream": True})
        await asyncio.gather(*blockers)
    assert answer.status_code == 200
    comments, data = sse(answer.text)
    assert comments and all(POSITION.match(c) for c in comments)
    assert data == [{"error": data[0]["error"]}] and data[0]["error"]["code"] == "queue_timeout"
    assert "data: [DONE]" not in answer.text


async def test_comments_can_be_turned_off(cluster: Cluster) -> None:
    cluster.worker(tokens_per_s=40, slots=1)
    router, http = await serve(cluster, every_s=0)
    async with http:
        blockers = await saturate(router, http, 2)
        answer = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        await asyncio.gather(*blockers)
    comments, data = sse(answer.text)
    assert answer.status_code == 200 and not comments and data
