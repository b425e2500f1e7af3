"""Per-pool autoscaling on queue depth, on a local Ray with raylane's own application.

One `sim` pool of small replicas ({CPU: 0.1}, one slot, 10 tokens/s) scales between 0
and 3 on short delays (up 1 s, down 3 s, idle 5 s), so a burst shows the whole cycle:
from zero, up to the bound, down again, and back to zero. Answers are checked word for
word (the sim engine cycles the prompt's words), so a lost or mixed-up job shows.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import msgspec
import pytest
import redis

from raylane.cluster.app import APP_NAME, build_application
from raylane.cluster.autoscale import Decision
from raylane.cluster.cli import render_status
from raylane.cluster.config import (
    Config,
    ModelConfig,
    PoolConfig,
    PoolReplicas,
    QueueConfig,
    deployment_name,
)
from raylane.cluster.keys import Keys
from raylane.cluster.redis_server import RedisServer, free_port
from raylane.router.schemas import ClusterStatus

with warnings.catch_warnings():  # Ray Serve's pydantic models warn on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve

PREFIX = "autoscale"
MAX = 3
POOL = PoolConfig(backend="sim", name="burst", slots=1, resources={"CPU": 0.1}, drain_s=1.0,
                  options={"tokens_per_s": 10},
                  replicas=PoolReplicas(min=0, max=MAX, upscale_delay_s=1.0,
                                        downscale_delay_s=3.0, idle_s=5.0))
CONFIG = Config(models=[ModelConfig(name="sim", queue=QueueConfig(lease_s=2.0, timeout_s=60),
                                    pools=[POOL])])
WORKER = deployment_name("sim", "burst")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def app(redis_url: str) -> Iterator[str]:
    """raylane's application on a local two-CPU Ray; yields the HTTP base URL."""
    ray.init(num_cpus=2, namespace="raylane", include_dashboard=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(CONFIG, redis_url, PREFIX), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def running() -> int:
    """The pool's RUNNING replicas, as Serve reports them."""
    deployment = serve.status().applications[APP_NAME].deployments[WORKER]
    return int(deployment.replica_states.get("RUNNING", 0))


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def ask(url: str, words: str, max_tokens: int) -> str:
    body = {"model": "sim", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": words}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=90)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def expected(words: str, max_tokens: int) -> str:
    cycle = words.split()
    return " ".join(cycle[i % len(cycle)] for i in range(max_tokens))


def decision(redis_url: str) -> Decision | None:
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hget(Keys(PREFIX).scale("sim"), "burst")
    return None if raw is None else Decision(**json.loads(raw))


def busy_worker_pid(redis_url: str) -> int | None:
    """The pid of a live worker of the pool that is running a job."""
    with redis.Redis.from_url(redis_url) as client:
        beats = [json.loads(v) for v in client.hgetall(Keys(PREFIX).workers("sim")).values()]
    busy = [b for b in beats if b["busy"] > 0 and time.time() - b["at"] < 1.5]
    return busy[0]["pid"] if busy else None


def burst(url: str, jobs: list[tuple[str, int]]) -> tuple[ThreadPoolExecutor, list[Future[str]]]:
    executor = ThreadPoolExecutor(len(jobs))
    return executor, [executor.submit(ask, url, words, n) for words, n in jobs]


def test_from_zero_a_queued_request_waits_for_a_replica_and_is_answered(app: str) -> None:
    wait_for(lambda: running() == 0, "the pool at zero replicas")
    started = time.monotonic()
    assert ask(app, "wake up pool", 4) == "wake up pool wake"
    assert time.monotonic() - started < 30
    assert running() >= 1


def test_a_burst_scales_up_within_bounds_then_down_to_zero(app: str, redis_url: str) -> None:
    jobs = [(f"burst job {i}", 30) for i in range(9)]  # 3 s each: 27 s of work on one replica
    executor, answers = burst(app, jobs)
    samples = []
    with executor:
        while not all(a.done() for a in answers):
            samples.append(running())
            time.sleep(0.2)
    assert [a.result() for a in answers] == [expected(w, n) for w, n in jobs]
    assert max(samples) == MAX  # rose to the bound under the burst ...
    assert all(0 <= n <= MAX for n in samples)  # ... and never past it
    status = httpx.get(f"{app}/raylane/status", timeout=10).json()
    msgspec.convert(status, ClusterStatus)  # the documented (closed) schema
    (pool,) = status["models"][0]["pools"]
    assert pool["replicas"]["autoscaled"] and (pool["replicas"]["min"], pool["replicas"]["max"]
                                                ) == (0, MAX)
    assert pool["scaling"]["target_jobs"] == 1
    assert "autoscaling: wants" in render_status(status)
    # After it: down, then to zero once idle, never leaving the bounds on the way.
    deadline = time.monotonic() + 30
    while (n := running()) > 0:
        assert 0 <= n <= MAX
        assert time.monotonic() < deadline, "did not scale back to zero"
        time.sleep(0.2)


def test_replicas_stopped_or_killed_during_a_scale_down_lose_no_job(
        app: str, redis_url: str) -> None:
    # One short job and two long ones on up to three replicas: when the short one ends, the
    # pool scales down while the long ones run; one of their replicas is then killed outright.
    jobs = [("short one", 30), ("long one", 80), ("long two", 80)]
    started = time.time()
    executor, answers = burst(app, jobs)
    with executor:

        def shrinking() -> bool:
            last = decision(redis_url)
            return (last is not None and last.at > started + 0.5 and last.current >= 2
                    and last.desired < last.current)

        wait_for(shrinking, "a scale-down with jobs running")
        pid = busy_worker_pid(redis_url)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while not all(a.done() for a in answers):
            assert 0 <= running() <= MAX
            time.sleep(0.2)
    assert [a.result() for a in answers] == [expected(w, n) for w, n in jobs]
