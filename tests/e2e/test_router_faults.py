"""A router replica killed while it streams answers: its jobs stop, the other replica's don't.

A cluster of its own with two router replicas and a Redis the test starts, so the test
can see which replica each running job answers to.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
import redis

from raylane.cluster.keys import Keys
from raylane.cluster.queue import ALIVE_TTL_S
from tests.e2e.conftest import Running, running

CONFIG = """\
router: {{port: {port}, replicas: {{min: 2, max: 2}}}}
models:
  - name: slow
    pools:
      - backend: sim
        options: {{tokens_per_s: 10}}
        slots: 4
        resources: {{CPU: 0.1}}
        replicas: {{min: 2, max: 2}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Running]:
    with running(tmp_path_factory.mktemp("routers"), CONFIG, {"REDIS_URL": redis_url}) as it:
        yield it


def stream(url: str, words: str) -> str:
    """Read a 150-token answer; returns its text, or how it broke off."""
    body = {"model": "slow", "messages": [{"role": "user", "content": words}],
            "max_tokens": 150, "stream": True}
    text = ""
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                          timeout=60) as response:
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    return text
                if '"content":"' in line:
                    text += line.split('"content":"')[1].split('"')[0]
    except httpx.HTTPError as exc:
        return f"broken: {type(exc).__name__}"
    return f"broken after: {text}"


def routers_of_running_jobs(client: redis.Redis) -> dict[str, str]:
    """Job id -> id of the router replica it answers to, for every running job."""
    keys = Keys()
    out = {}
    for job_id in client.zrange(keys.leases("slow"), 0, -1):
        reply = client.hget(keys.job(job_id.decode()), "reply")
        if reply is not None:
            out[job_id.decode()] = reply.decode().rsplit(":", 1)[1]
    return out


def test_killed_router_replica_stops_its_jobs_and_spares_the_others(
    cluster: Running, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    with ThreadPoolExecutor(8) as pool:
        answers: list[Future[str]] = []
        for i in range(8):  # until both replicas hold streams
            answers.append(pool.submit(stream, cluster.url, f"s{i}"))
            time.sleep(0.3)
            if len(set(routers_of_running_jobs(client).values())) == 2 and i >= 3:
                break
        jobs = routers_of_running_jobs(client)
        assert len(set(jobs.values())) == 2, jobs
        victim = next(iter(jobs.values()))
        pid = None
        for _ in range(100):  # ask until the victim replica answers a status request
            status = cluster.status()
            if status["router"] == victim:
                pid = status["pid"]
                break
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        doomed = {j for j, r in jobs.items() if r == victim}
        while doomed & set(routers_of_running_jobs(client)):
            assert time.monotonic() - killed < ALIVE_TTL_S + 2, "orphaned jobs kept running"
            time.sleep(0.1)
        results = [a.result(timeout=60) for a in answers]
    survivors = [r for r in results if not r.startswith("broken")]
    assert survivors, results
    for text in survivors:  # every request on the other replica got its whole answer
        word = text.split()[0]
        assert text == " ".join([word] * 150)
    assert len(survivors) == len(results) - len(doomed)
