"""Tensor-parallel pools on a simulated multi-node Ray cluster.

`ray.cluster_utils.Cluster` starts one raylet per "node" on this machine; nodes declare
GPUs they do not have, which is all placement needs. The pool is `sim` (it ignores GPUs)
with two ranks of {GPU: 1, CPU: 0.1}: a replica reserves a node's two GPUs, so the
placement group table shows where Ray put each replica. One Ray cluster serves the module.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from raylane.cluster.app import APP_NAME, build_application
from raylane.cluster.config import Config, ModelConfig, PoolConfig, Replicas, deployment_name
from raylane.cluster.keys import Keys
from raylane.cluster.placement import PlacementError
from raylane.cluster.redis_server import RedisServer, free_port
from raylane.cluster.runtime import Cluster as Raylane

with warnings.catch_warnings():  # Ray Serve's pydantic models warn on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

PREFIX = "placement"
POOL = PoolConfig(backend="sim", name="tp", tensor_parallel=2, slots=2,
                  resources={"GPU": 1.0, "CPU": 0.1}, replicas=Replicas(min=2, max=2),
                  drain_s=0.0, options={"tokens_per_s": 20})
CONFIG = Config(models=[ModelConfig(name="sim", pools=[POOL])])
WORKER = deployment_name("sim", "tp")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def nodes() -> Iterator[Cluster]:
    """A head with no GPU (Serve's controller, proxy, router) and two nodes of 2 GPUs."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=2)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_a_config_that_can_never_be_placed_is_refused_at_start(
        nodes: Cluster, redis_url: str) -> None:
    assert not ray.is_initialized()  # runtime.Cluster connects, and disconnects on failure
    wide = Config(models=[ModelConfig(name="sim", pools=[
        PoolConfig(backend="sim", tensor_parallel=3, resources={"GPU": 1.0})])])
    with pytest.raises(PlacementError, match=r"models\[0\].pools\[0\] \(model 'sim', pool "
                                             r"'sim-0'\): tensor_parallel 3 needs 3 bundles .* "
                                             r"but the largest node has 2 GPU"):
        Raylane(wide, redis_url=redis_url, ray_address=nodes.address, prefix=PREFIX).start()
    many = Config(models=[ModelConfig(name="sim", pools=[
        PoolConfig(backend="sim", tensor_parallel=2, resources={"GPU": 1.0},
                   replicas=Replicas(min=3, max=3))])])
    with pytest.raises(PlacementError, match=r"3 replicas \(replicas.min 3\) of \{GPU: 2\} "
                                             r"each need \{GPU: 6\} in all, but the cluster "
                                             r"has \{GPU: 4\}"):
        Raylane(many, redis_url=redis_url, ray_address=nodes.address, prefix=PREFIX).start()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def app(nodes: Cluster, redis_url: str) -> Iterator[str]:
    """raylane's own application on the simulated cluster; yields the HTTP base URL."""
    ray.init(address=nodes.address, namespace="raylane", include_dashboard=False)
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_application(CONFIG, redis_url, PREFIX), name=APP_NAME, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def groups() -> list[dict]:
    """The live placement groups of the pool's replicas."""
    table = ray.util.placement_group_table().values()
    return [pg for pg in table if WORKER in pg["name"] and pg["state"] == "CREATED"]


def node_of(group: dict) -> str:
    """The one node a group's bundles are on."""
    (node,) = set(group["bundles_to_node_id"].values())
    return node


def live_workers(redis_url: str) -> dict[str, int]:
    """Worker id -> busy slots of the pool's replicas that sent a heartbeat lately."""
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hgetall(Keys(PREFIX).workers("sim"))
    beats = [json.loads(value) for value in raw.values()]
    return {b["worker"]: b["busy"] for b in beats if time.time() - b["at"] < 2}


def ask(url: str, words: str, max_tokens: int = 3, timeout_s: float = 60) -> str:
    """One chat completion through the Serve proxy, retried while the app recovers."""
    body = {"model": "sim", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": words}]}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)
            if response.status_code == 200:
                return response.json()["choices"][0]["message"]["content"]
            problem = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer: {problem}")
        time.sleep(0.5)


def test_each_replica_packs_its_ranks_on_one_gpu_node(app: str, nodes: Cluster) -> None:
    placed = groups()
    assert len(placed) == 2
    gpu_nodes = {n.node_id for n in nodes.worker_nodes}
    for group in placed:
        assert group["strategy"] == "STRICT_PACK"
        assert list(group["bundles"].values()) == [{"GPU": 1.0, "CPU": 0.2},
                                                   {"GPU": 1.0, "CPU": 0.1}]
        assert node_of(group) in gpu_nodes  # all bundles of a replica on one node
    # No node has 4 GPUs: the two replicas take the two nodes.
    assert {node_of(g) for g in placed} == gpu_nodes
    assert ask(app, "hello there friend") == "hello there friend"


def test_a_replica_lost_with_its_node_comes_back_on_a_spare(
        app: str, nodes: Cluster, redis_url: str) -> None:
    spare = nodes.add_node(num_cpus=1, num_gpus=2)
    nodes.wait_for_nodes()
    lost = next(n for n in nodes.worker_nodes if n is not spare)
    kept = {node_of(g) for g in groups()} - {lost.node_id}
    before = set(live_workers(redis_url))
    nodes.remove_node(lost)
    deadline = time.monotonic() + 60
    while {node_of(g) for g in groups()} != kept | {spare.node_id} or not (
            set(live_workers(redis_url)) - before):
        assert time.monotonic() < deadline, f"not replaced: {groups()}"
        time.sleep(0.5)
    (new,) = set(live_workers(redis_url)) - before
    # Four one-second jobs on two replicas of two slots: the new replica takes some.
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(ask, app, f"job {i}", 20) for i in range(4)]
        busy = 0
        while not all(a.done() for a in answers):
            busy = max(busy, live_workers(redis_url).get(new, 0))
            time.sleep(0.1)
    assert [a.result() for a in answers] == [" ".join([f"job {i}"] * 10) for i in range(4)]
    assert busy > 0
