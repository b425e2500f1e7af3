"""Build the Ray Serve application: one router deployment, one deployment per pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raylane.cluster.autoscale import policy_config
from raylane.cluster.config import (
    Config,
    ModelConfig,
    PoolConfig,
    autoscaled,
    deployment_name,
    pool_name,
)
from raylane.cluster.placement import STRATEGY, replica_actor_resources, replica_bundles

if TYPE_CHECKING:
    from ray.serve import Application

APP_NAME = "raylane"
WORKER_SHUTDOWN_POLL_S = 0.1


def actor_options(resources: dict[str, float]) -> dict[str, Any]:
    """Ray actor options for a pool's `resources` (CPU, GPU, memory, custom)."""
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    options: dict[str, Any] = {"num_cpus": resources.get("CPU", 0.0),
                               "num_gpus": resources.get("GPU", 0.0)}
    if "memory" in resources:
        options["memory"] = resources["memory"]
    if custom:
        options["resources"] = custom
    return options


def pool_options(pool: PoolConfig) -> dict[str, Any]:
    """Serve deployment options that place one pool's replicas (a fixed count of them).

    With `tensor_parallel` N > 1 a replica is a placement group of N bundles on one node;
    Serve puts the replica actor in bundle 0, and the engine starts its rank workers in the
    group (see `raylane.cluster.placement`).
    """
    options: dict[str, Any] = {
        "num_replicas": _replicas(pool),
        "ray_actor_options": actor_options(replica_actor_resources(pool)),
    }
    if pool.tensor_parallel > 1:
        options["placement_group_bundles"] = replica_bundles(pool)
        options["placement_group_strategy"] = STRATEGY
    return options


def build_application(config: Config, redis_url: str, prefix: str = "raylane") -> Application:
    """The whole raylane application, ready for `serve.run`."""
    from raylane.router.deployment import Router
    from raylane.workers.replica import Worker

    pools = []
    for model in config.models:
        for index, pool in enumerate(model.pools):
            name = pool_name(pool, index)
            pools.append(
                Worker.options(  # type: ignore[attr-defined]
                    name=deployment_name(model.name, name),
                    **scaling_options(model, index, redis_url, prefix),
                    # Serve stops waiting for the replica's own drain a little later.
                    graceful_shutdown_timeout_s=pool.drain_s + 10,
                    # Workers take their jobs from Redis, not from Serve: the only Serve
                    # calls a stopping one can have are status reads, so it need not wait
                    # out Serve's default 2 s before its own drain begins.
                    graceful_shutdown_wait_loop_s=WORKER_SHUTDOWN_POLL_S,
                ).bind(model, pool, name, redis_url, prefix)
            )
    router = Router.options(  # type: ignore[attr-defined]
        num_replicas=config.router.replicas.min)
    return router.bind(config, redis_url, prefix, *pools)


def scaling_options(model: ModelConfig, index: int, redis_url: str,
                    prefix: str) -> dict[str, Any]:
    """`pool_options`, with Serve autoscaling on the queue for a pool with min < max."""
    pool = model.pools[index]
    options = pool_options(pool)
    if autoscaled(pool):
        del options["num_replicas"]
        options["autoscaling_config"] = policy_config(model, index, redis_url, prefix)
    return options


def _replicas(pool: PoolConfig) -> int:
    return max(1, pool.replicas.min)
