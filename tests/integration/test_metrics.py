"""`GET /metrics` over real router replicas, sim workers and a real redis-server (no Ray).

Each router replica serves its own ASGI app (what Serve runs in a replica) and is called
over HTTP through httpx's ASGI transport; a scrape of any one of them must answer for the
whole cluster, whichever replica took the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from raylane.cluster.apikeys import ApiKey
from raylane.cluster.config import AuthConfig, ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.errors import QueueFull, QueueTimeout
from raylane.cluster.messages import Job
from raylane.router.app import build_app
from raylane.router.state import RouterState
from tests.integration.harness import Cluster, answer, job, start_cluster

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextlib.asynccontextmanager
async def http(router: RouterState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(router))
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` that carry `labels`."""
    return sum(value for (n, have), value in samples.items()
               if n == name and set(labels.items()) <= have)


async def eventually(client: httpx.AsyncClient, check: Callable[[Samples], bool],
                     timeout_s: float = 10.0) -> Samples:
    """Scrape until `check` holds (the processes flush their counts once a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await scrape(client)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"never seen: {sorted(samples.items())}"
        await asyncio.sleep(0.2)


async def chat(client: httpx.AsyncClient, words: str, max_tokens: int) -> dict:
    body = {"model": "sim", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": words}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_scrape_counts_the_requests_of_every_router_replica(cluster: Cluster) -> None:
    first, second = await cluster.router(), await cluster.router()
    cluster.worker(tokens_per_s=200)
    async with http(first) as a, http(second) as b:
        replies = await asyncio.gather(*[chat(a, f"alpha {i}", 4) for i in range(3)],
                                       *[chat(b, f"beta {i}", 5) for i in range(2)])
        assert sum(r["usage"]["completion_tokens"] for r in replies) == 3 * 4 + 2 * 5
        ok = {"model": "sim", "priority": "0", "outcome": "ok", "code": ""}
        for client in (a, b):  # either replica answers for both
            seen = await eventually(client,
                                    lambda s: total(s, "raylane_requests_total", **ok) == 5)
            assert total(seen, "raylane_generation_tokens_total", model="sim", pool="sim-0") == 22
            assert total(seen, "raylane_prompt_tokens_total", pool="sim-0") > 0
            for histogram in ("raylane_queue_wait_seconds", "raylane_time_to_first_token_seconds"):
                assert total(seen, f"{histogram}_count", model="sim", pool="sim-0",
                            priority="0") == 5
                assert total(seen, f"{histogram}_bucket", pool="sim-0", le="+Inf") == 5
            assert total(seen, "raylane_time_per_output_token_seconds_count", pool="sim-0") == 5
            assert total(seen, "raylane_request_duration_seconds_count", priority="0") == 5
            # the sim engine makes 200 tokens/s: 5 ms a token, well under 0.1 s
            assert total(seen, "raylane_time_per_output_token_seconds_bucket", le="0.1") == 5
            assert 0 < total(seen, "raylane_request_duration_seconds_sum") < 5 * 10


async def test_a_scrape_shows_waiting_jobs_by_priority_and_the_busy_slots(
    cluster: Cluster,
) -> None:
    router = await cluster.router()
    worker = cluster.worker(tokens_per_s=20, slots=1)
    blocker = asyncio.create_task(answer(router, job(router, "blocker", max_tokens=200)))
    while not worker.running:
        await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(answer(router, prioritised(router, p)))
               for p in (5, 5, 0, -30)]
    async with http(router) as client:
        try:
            def saturated(s: Samples) -> bool:
                return (total(s, "raylane_queue_depth", model="sim") == 4
                        and total(s, "raylane_engine_slots_busy", model="sim") == 1)

            seen = await eventually(client, saturated)
            depth = {dict(labels)["priority"]: value for (name, labels), value in seen.items()
                     if name == "raylane_queue_depth"}
            assert depth == {"5": 2, "0": 1, "<-10": 1}  # -30 folds into the lowest label
            assert total(seen, "raylane_queue_depth", pool="") == 4  # the shared queue
            assert total(seen, "raylane_queue_running", model="sim") == 1
            assert total(seen, "raylane_engine_slots", model="sim", pool="sim-0") == 1
            assert total(seen, "raylane_replicas", model="sim", pool="sim-0") == 1
            assert total(seen, "raylane_replicas_target", model="sim", pool="sim-0") == 1
        finally:
            for task in (blocker, *waiting):
                task.cancel()
            await asyncio.gather(blocker, *waiting, return_exceptions=True)
        # the callers left: their requests are counted as cancelled, per priority label
        seen = await eventually(client, lambda s: total(
            s, "raylane_requests_total", outcome="cancelled") == 5)
        assert total(seen, "raylane_requests_total", outcome="cancelled", priority="5") == 2
        assert total(seen, "raylane_requests_total", outcome="cancelled", priority="<-10") == 1
        assert total(seen, "raylane_requests_total", outcome="ok") == 0
        # nothing waits any more, and the default priority's series stays, at zero
        emptied = await eventually(client, lambda s: total(s, "raylane_queue_depth") == 0)
        assert (("raylane_queue_depth",
                 frozenset({"model": "sim", "pool": "", "priority": "0"}.items()))
                in emptied)


def prioritised(router: RouterState, priority: int, timeout: float = 30.0) -> Job:
    return msgspec.structs.replace(job(router, f"p{priority}", max_tokens=2, timeout=timeout),
                                   priority=priority)


SMALL = ModelConfig(name="sim", queue=QueueConfig(lease_s=2.0, max_depth=1),
                    pools=[PoolConfig(backend="sim", slots=1)])


@pytest.fixture
async def small() -> AsyncIterator[Cluster]:
    """A model whose queue holds one job, served by one slot."""
    c = start_cluster(SMALL)
    yield c
    await c.close()


async def test_rejected_and_timed_out_requests_are_counted_by_outcome_and_code(
    small: Cluster,
) -> None:
    router = await small.router()
    small.worker(tokens_per_s=20, slots=1)
    blocker = asyncio.create_task(answer(router, job(router, "blocker", max_tokens=60)))
    async with http(router) as client:
        await eventually(client, lambda s: total(s, "raylane_engine_slots_busy") == 1)
        late = asyncio.create_task(answer(router, job(router, "late", 2, timeout=1.0)))
        await eventually(client, lambda s: total(s, "raylane_queue_depth") == 1)
        with pytest.raises(QueueFull):
            await answer(router, job(router, "refused", 2))
        with pytest.raises(QueueTimeout):
            await late
        await blocker
        seen = await eventually(client, lambda s: total(
            s, "raylane_requests_total", outcome="ok") == 1 and total(
            s, "raylane_requests_total", outcome="timeout") == 1)
    assert total(seen, "raylane_requests_total", outcome="rejected", code="queue_full") == 1
    assert total(seen, "raylane_requests_total", outcome="timeout", code="queue_timeout") == 1
    # the request that timed out in the queue never reached a worker
    assert total(seen, "raylane_queue_wait_seconds_count") == 1


async def test_with_keys_metrics_needs_one_unless_opened(cluster: Cluster) -> None:
    cluster.config = msgspec.structs.replace(cluster.config, auth=AuthConfig(enabled=True))
    router = await cluster.router()
    key = await router.key_store.create(ApiKey(name="prometheus"))
    async with http(router) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        client.headers["Authorization"] = f"Bearer {key}"
        samples = await scrape(client)
    assert ("raylane_replicas", frozenset({"model": "sim", "pool": "sim-0"}.items())) in samples
    opened = AuthConfig(enabled=True, open_metrics=True)
    cluster.config = msgspec.structs.replace(cluster.config, auth=opened)
    async with http(await cluster.router()) as client:
        assert (await client.get("/v1/models")).status_code == 401
        assert "raylane_replicas" in {name for name, _ in await scrape(client)}


async def test_without_redis_metrics_answers_503_naming_the_cause(cluster: Cluster) -> None:
    router = await cluster.router()
    assert cluster.server.process is not None
    cluster.server.process.kill()
    cluster.server.process.wait()
    async with http(router) as client:
        response = await client.get("/metrics")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["message"].startswith("Redis is unreachable")
