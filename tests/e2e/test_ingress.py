"""Direct ingress: the one router replica serves the port itself, and comes back on it.

`raylane serve` with one router replica (`router.ingress: auto`) has no Serve proxy in
front of the router. With nothing in front to send requests elsewhere, a router replica
that dies must take its port back once Serve restarts it, and its jobs must stop.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from raylane.cluster.queue import ALIVE_TTL_S
from tests.e2e.conftest import Running, listener, running
from tests.e2e.test_router_faults import routers_of_running_jobs, stream

CONFIG = """\
router: {{port: {port}}}
models:
  - name: slow
    pools:
      - backend: sim
        options: {{tokens_per_s: 10}}
        slots: 4
        resources: {{CPU: 0.1}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Running]:
    with running(tmp_path_factory.mktemp("ingress"), CONFIG, {"REDIS_URL": redis_url}) as it:
        yield it


def test_a_killed_router_replica_comes_back_on_the_port(cluster: Running,
                                                        redis_url: str) -> None:
    port = httpx.URL(cluster.url).port
    assert port is not None
    router = cluster.status()["pid"]
    assert listener(port).pid == router  # no proxy: the router replica holds the port
    client = redis.Redis.from_url(redis_url)
    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(stream, cluster.url, f"s{i}") for i in range(3)]
        deadline = time.monotonic() + 30
        while len(routers_of_running_jobs(client)) < 3:
            assert time.monotonic() < deadline, "the streams did not start"
            time.sleep(0.1)
        os.kill(router, signal.SIGKILL)
        killed = time.monotonic()
        # Their client connections went with the replica: each stream breaks off, none
        # hangs, and their jobs stop rather than run on for nobody.
        results = [a.result(timeout=30) for a in answers]
        assert all(r.startswith("broken") for r in results), results
        while routers_of_running_jobs(client):
            assert time.monotonic() - killed < ALIVE_TTL_S + 2, "orphaned jobs kept running"
            time.sleep(0.1)
    # Serve restarts the replica, and the new one serves the same port.
    while True:
        try:
            status = cluster.status()
            break
        except OSError:
            assert time.monotonic() - killed < 90, "the router did not come back"
            time.sleep(0.5)
    assert status["pid"] != router
    assert listener(port).pid == status["pid"]
    body = {"model": "slow", "messages": [{"role": "user", "content": "back"}],
            "max_tokens": 5}
    reply = httpx.post(f"{cluster.url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "back back back back back"
