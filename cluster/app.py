"""Build the Ray Serve application: one router deployment, one deployment per pool."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from raylane.cluster.config import Config, PoolConfig, deployment_name, pool_name

APP_NAME = "raylane"


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
                    num_replicas=_replicas(pool),
                    ray_actor_options=actor_options(pool.resources),
                    # Serve stops waiting for the replica's own drain a little later.
                    graceful_shutdown_timeout_s=pool.drain_s + 10,
                ).bind(model, pool, name, redis_url, prefix)
            )
    router = Router.options(  # type: ignore[attr-defined]
        num_replicas=config.router.replicas.min)
    return router.bind(config, redis_url, prefix, *pools)


def _replicas(pool: PoolConfig) -> int:
    return max(1, pool.replicas.min)
