"""The cluster's state as `raylane status` shows it: models, pools, replicas, queues."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from raylane.cluster.autoscale import Decision, read_decisions
from raylane.cluster.config import PoolConfig, autoscaled, deployment_name, pool_name
from raylane.cluster.registry import live_workers
from raylane.router.state import RouterState


async def cluster_status(state: RouterState) -> dict[str, Any]:
    deployments = await _serve_deployments()
    models = []
    for model in state.config.models:
        workers = await live_workers(state.redis, state.keys, model.name)
        decisions = await read_decisions(state.redis, state.keys, model.name)
        pools = []
        for index, pool in enumerate(model.pools):
            name = pool_name(pool, index)
            mine = [w for w in workers if w.pool == name]
            decision = decisions.get(name) if autoscaled(pool) else None
            pools.append({
                "name": name,
                "backend": pool.backend,
                "model": pool.model,
                "replicas": _replicas(pool, len(mine), decision,
                                      deployments.get(deployment_name(model.name, name))),
                "queued": await state.queue.depth(model.name, name),
                "slots": sum(w.slots for w in mine),
                "busy": sum(w.busy for w in mine),
                "workers": [{"id": w.worker, "node": w.node, "pid": w.pid, "busy": w.busy,
                             "slots": w.slots} for w in mine],
                "scaling": _scaling(decision),
            })
        queue = state.queue
        models.append({
            "name": model.name,
            "aliases": model.aliases,
            "queue": {
                "depth": await queue.depth(model.name),
                "by_priority": {str(p): n for p, n in
                                (await queue.depth_by_priority(model.name)).items()},
                "running": await queue.leased(model.name),
                "dead_letters": len(await queue.dead_letters(model.name)),
                "max_depth": model.queue.max_depth,
                "drain_per_s": round(await queue.drain_rate(model.name), 3),
            },
            "pools": pools,
        })
    return {"router": state.router_id, "pid": os.getpid(), "models": models}


def _replicas(pool: PoolConfig, live: int, decision: Decision | None,
              serve: dict[str, int] | None) -> dict[str, Any]:
    return {"live": live, "min": pool.replicas.min, "max": pool.replicas.max, "serve": serve,
            "target": replica_target(pool, decision), "autoscaled": autoscaled(pool)}


def replica_target(pool: PoolConfig, decision: Decision | None) -> int | None:
    """The replicas a pool is scaling to: its fixed count, or (autoscaled) Serve's target in
    the policy's last decision; None before the policy's first decision."""
    if not autoscaled(pool):
        return max(1, pool.replicas.min)
    return decision.target if decision is not None else None


def _scaling(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {"current": decision.current, "target": decision.target,
            "desired": decision.desired, "queued": decision.queued,
            "in_flight": decision.in_flight, "target_jobs": decision.target_jobs,
            "age_s": round(max(0.0, time.time() - decision.at), 1)}


async def _serve_deployments() -> dict[str, dict[str, int]]:
    """Replica counts by state per deployment, as Ray Serve reports them ({} outside Ray)."""
    with contextlib.suppress(Exception):
        import ray
        from ray import serve

        if not ray.is_initialized():
            return {}  # serve.status() would start a local Ray cluster just to answer
        status = await asyncio.to_thread(serve.status)
        out: dict[str, dict[str, int]] = {}
        for app in status.applications.values():
            for name, deployment in app.deployments.items():
                out[name] = {str(k): v for k, v in deployment.replica_states.items()}
        return out
    return {}
