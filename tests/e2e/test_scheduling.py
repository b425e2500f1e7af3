"""Priorities, deadlines and the queue bound, seen through the HTTP API.

The `slow` model is a `sim` pool with one slot at 20 tokens/s and a queue of 3,
so the tests can hold its only slot busy and watch what happens to the rest.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.e2e.conftest import Running

SLOW = "slow"


@pytest.fixture(scope="module")
def client(cluster: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="any", max_retries=0) as client:
        yield client


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def ask(client: openai.OpenAI, words: str, tokens: int, **kw: object) -> str:
    reply = client.chat.completions.create(
        model=SLOW, messages=[{"role": "user", "content": words}], max_tokens=tokens, **kw)
    return reply.choices[0].message.content or ""


def wait_for(cluster: Running, check: Callable[[dict], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slow = next(m for m in cluster.status()["models"] if m["name"] == SLOW)
        if check(slow["queue"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"queue never reached the expected state: {cluster.status()}")


def occupy(client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor,
           seconds: float) -> Future[str]:
    """Hold the slow model's only slot for about `seconds`."""
    busy = pool.submit(ask, client, "blocker", int(seconds * 20))
    wait_for(cluster, lambda q: q["running"] == 1 and q["depth"] == 0)
    return busy


def test_a_later_urgent_request_overtakes_queued_ones(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    finished: list[str] = []

    def tracked(name: str, **kw: object) -> None:
        ask(client, name, 2, **kw)
        finished.append(name)

    blocker = occupy(client, cluster, pool, 2.0)
    blocker.add_done_callback(lambda _: finished.append("blocker"))
    lows = []
    for i in range(2):
        lows.append(pool.submit(tracked, f"low{i}", extra_body={"priority": 10}))
        wait_for(cluster, lambda q, n=i + 1: q["depth"] == n)
    high = pool.submit(tracked, "high", extra_headers={"X-Priority": "-5"})
    wait_for(cluster, lambda q: q["depth"] == 3)
    for future in (blocker, high, *lows):
        future.result(timeout=30)
    assert finished == ["blocker", "high", "low0", "low1"]


def test_status_shows_queue_depth_by_priority(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    blocker = occupy(client, cluster, pool, 1.5)
    queued = [pool.submit(ask, client, "q", 1, extra_body={"priority": p}) for p in (7, -2, 7)]
    wait_for(cluster, lambda q: q["depth"] == 3)
    shown = subprocess.run([sys.executable, "-m", "raylane.cluster.cli", "status", "--url",
                            cluster.url], capture_output=True, text=True, check=True).stdout
    assert "model slow" in shown
    assert "3/3 queued [p-2=1, p7=2], 1 running" in shown
    assert "pool sim-0 (sim" in shown and "1 live replicas" in shown
    for future in (blocker, *queued):
        future.result(timeout=30)


def test_a_request_whose_deadline_passes_in_the_queue_gets_504_and_never_runs(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    blocker = occupy(client, cluster, pool, 2.0)
    began = time.monotonic()
    with pytest.raises(openai.InternalServerError) as error:
        ask(client, "too late", 2, extra_headers={"X-Request-Timeout": "0.5"})
    waited = time.monotonic() - began
    assert error.value.status_code == 504
    assert error.value.body["code"] == "queue_timeout"
    assert 0.4 < waited < 1.5
    wait_for(cluster, lambda q: q["depth"] == 0)  # removed from the queue, not left to rot
    blocker.result(timeout=30)


def test_a_full_queue_answers_429_with_retry_after(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    blocker = occupy(client, cluster, pool, 1.5)
    queued = [pool.submit(ask, client, f"q{i}", 1) for i in range(3)]
    wait_for(cluster, lambda q: q["depth"] == 3)
    began = time.monotonic()
    with pytest.raises(openai.RateLimitError) as error:
        ask(client, "one too many", 1)
    assert time.monotonic() - began < 0.5  # refused up front, not after waiting
    assert int(error.value.response.headers["retry-after"]) >= 1
    assert error.value.body["code"] == "queue_full"
    assert [f.result(timeout=30) for f in queued] == ["q0", "q1", "q2"]
    blocker.result(timeout=30)


def test_bad_priority_and_timeout_headers_are_400(client: openai.OpenAI) -> None:
    for headers, param in (({"X-Priority": "urgent"}, "x-priority"),
                           ({"X-Request-Timeout": "soon"}, "x-request-timeout"),
                           ({"X-Request-Timeout": "-1"}, "x-request-timeout")):
        with pytest.raises(openai.BadRequestError) as error:
            ask(client, "x", 1, extra_headers=headers)
        assert error.value.body["param"] == param


def test_a_stream_left_while_it_hears_its_queue_position_leaves_the_queue(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    blocker = occupy(client, cluster, pool, 3.0)
    body = {"model": SLOW, "stream": True, "max_tokens": 2,
            "messages": [{"role": "user", "content": "waiting"}]}
    with httpx.stream("POST", f"{cluster.url}/v1/chat/completions", json=body,
                      timeout=10) as answer:
        assert answer.status_code == 200
        first = next(answer.iter_lines())  # the first comment, after a second in the queue
        assert first.startswith(": queue position 1"), first
    # the connection is closed: the job leaves the queue at once, long before the slot frees
    wait_for(cluster, lambda q: q["depth"] == 0, timeout=1.5)
    assert not blocker.done()
    blocker.result(timeout=30)
    assert "already running" not in cluster.log.read_text()
