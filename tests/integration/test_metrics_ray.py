"""`/metrics` of raylane's application on a local Ray: two router replicas behind Serve's
proxy, a `sim` pool, and Ray's own metrics export.

Serve's proxy spreads requests and scrapes over the router replicas; every scrape must
count every request, whichever replica served it. The same counts reach Ray's metrics
agent as `ray_raylane_*`, per process.
"""

from __future__ import annotations

import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from raylane.cluster.app import APP_NAME, build_application
from raylane.cluster.config import (
    Config,
    ModelConfig,
    PoolConfig,
    QueueConfig,
    Replicas,
    RouterConfig,
)
from raylane.cluster.keys import Keys
from raylane.cluster.redis_server import RedisServer, free_port

with warnings.catch_warnings():  # Ray Serve's pydantic models warn on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve

PREFIX = "metrics"
REQUESTS = 12
CONFIG = Config(
    router=RouterConfig(replicas=Replicas(min=2, max=2)),
    models=[ModelConfig(name="sim", queue=QueueConfig(lease_s=2.0, timeout_s=60),
                        pools=[PoolConfig(backend="sim", name="fast", slots=4, drain_s=1.0,
                                          resources={"CPU": 0.1},
                                          options={"tokens_per_s": 50})])])


@dataclass
class App:
    url: str
    redis_url: str
    ray_metrics: str


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    """raylane on a local Ray whose metrics agent exports every second."""
    with RedisServer() as server:
        metrics_port = free_port()
        ray.init(num_cpus=2, namespace="raylane", include_dashboard=False,
                 _metrics_export_port=metrics_port,
                 _system_config={"metrics_report_interval_ms": 1000})
        port = free_port()
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_application(CONFIG, server.url, PREFIX), name=APP_NAME,
                      route_prefix="/")
            yield App(f"http://127.0.0.1:{port}", server.url,
                      f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            serve.shutdown()
            ray.shutdown()


def samples(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` carrying `labels` in a Prometheus text page."""
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and labels.items() <= s.labels.items())


def wait_for(read: Callable[[], str], check: Callable[[str], bool], timeout_s: float = 30
             ) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = read()
        if check(text):
            return text
        assert time.monotonic() < deadline, f"never seen in:\n{text[-3000:]}"
        time.sleep(0.3)


def ask(url: str, words: str) -> int:
    body = {"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": words}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["completion_tokens"])


def test_every_scrape_through_the_proxy_counts_both_router_replicas(app: App) -> None:
    with ThreadPoolExecutor(REQUESTS) as pool:
        tokens = list(pool.map(lambda i: ask(app.url, f"word{i} other"), range(REQUESTS)))
    assert tokens == [5] * REQUESTS
    served = inboxes_used(app.redis_url)
    assert len(served) == 2, f"Serve sent every request to one replica: {served}"

    def scrape() -> str:
        response = httpx.get(f"{app.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    ok = {"model": "sim", "outcome": "ok"}

    def counted(text: str) -> bool:
        return (samples(text, "raylane_requests_total", **ok) == REQUESTS
                and samples(text, "raylane_generation_tokens_total", pool="fast") == 5 * REQUESTS
                and samples(text, "raylane_time_to_first_token_seconds_count",
                            pool="fast") == REQUESTS)

    # Routers and workers each flush their counts to Redis once a second, separately.
    wait_for(scrape, counted)
    for _ in range(6):  # whichever replica the proxy picks
        text = scrape()
        assert counted(text), text[-3000:]
        assert samples(text, "raylane_replicas", pool="fast") == 1
        assert samples(text, "raylane_engine_slots", pool="fast") == 4


def test_ray_metrics_export_has_the_same_counts_per_process(app: App) -> None:
    def read() -> str:
        with urllib.request.urlopen(app.ray_metrics, timeout=10) as response:
            return response.read().decode()

    # Each process's counters reach the agent on their own schedule: wait for all of them,
    # then check that none counts more than once.
    text = wait_for(read, lambda t: samples(
        t, "ray_raylane_requests_total", model="sim", outcome="ok") >= REQUESTS
        and samples(t, "ray_raylane_time_to_first_token_seconds_count") >= REQUESTS
        and samples(t, "ray_raylane_generation_tokens_total", pool="fast") >= 5 * REQUESTS)
    assert samples(text, "ray_raylane_requests_total", model="sim", outcome="ok") == REQUESTS
    assert samples(text, "ray_raylane_generation_tokens_total", pool="fast") == 5 * REQUESTS


def inboxes_used(redis_url: str) -> list[str]:
    """The router inboxes that received events: one per replica that served requests."""
    with redis.Redis.from_url(redis_url) as client:
        streams = [k.decode() for k in client.scan_iter(f"{Keys(PREFIX).inbox('')}*")
                   if not k.endswith(b":alive") and client.type(k) == b"stream"]
        return [s for s in streams if client.xlen(s)]
