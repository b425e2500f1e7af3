"""Where a pool's replicas go on Ray, and the start-time check that they can go anywhere.

A replica of a pool with `tensor_parallel` N reserves one placement group of N bundles, one
per rank, packed onto one node (`STRICT_PACK`), the way Ray Serve LLM places vLLM. The
replica actor itself holds only CPU, in bundle 0, so each rank's GPU is left to the rank
worker vLLM starts there.

Ray Serve never fails a replica that does not fit: it waits for room that may never come,
and `serve.run` hangs. `check_placement` refuses such a config at start instead. Its rules
are necessary conditions (each pool alone, then all pools' sum), not a bin packing: a config
they pass may still not place, but a config they refuse can never place.

This module must never import the router or the workers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from raylane.cluster.config import Config, PoolConfig, pool_name
from raylane.cluster.yamlpos import ConfigError

Resources = dict[str, float]
STRATEGY = "STRICT_PACK"
_EPS = 1e-9  # Ray counts resources in 1/10000 units; this only absorbs float sums


class PlacementError(ConfigError):
    """A config the Ray cluster can never place, with the pool and the reason."""


@dataclass(frozen=True)
class NodeGroup:
    """A node type the cluster's autoscaler may start (`max_count` -1: no limit)."""

    resources: Resources
    max_count: int


def replica_actor_resources(pool: PoolConfig) -> Resources:
    """What the replica actor itself asks Ray for.

    Without tensor parallelism, the pool's resources. With it, only the CPU of one rank:
    the replica runs the engine's driver and the pull loop, and the GPUs of the group are
    for the rank workers the engine starts in its bundles.
    """
    if pool.tensor_parallel == 1:
        return dict(pool.resources)
    cpu = pool.resources.get("CPU", 0.0)
    return {"CPU": cpu} if cpu else {}


def replica_bundles(pool: PoolConfig) -> list[Resources]:
    """The placement group bundles of one replica: one per rank, the actor's share in 0.

    Follows Ray Serve LLM's `_merge_replica_actor_and_child_actor_bundles`: Serve schedules
    the replica actor in bundle 0, so bundle 0 is the replica actor's resources plus rank 0's.
    """
    rank = {k: v for k, v in pool.resources.items() if v}
    if pool.tensor_parallel == 1:
        return [rank]
    first = dict(rank)
    for key, amount in replica_actor_resources(pool).items():
        first[key] = first.get(key, 0.0) + amount
    return [first] + [dict(rank) for _ in range(pool.tensor_parallel - 1)]


def check_placement(config: Config, nodes: Sequence[Resources],
                    groups: Sequence[NodeGroup] = ()) -> None:
    """Raise PlacementError when some pool can never be placed on these nodes.

    `nodes` are the alive nodes' total resources; `groups` the node types an autoscaler
    may add (their nodes count as possible capacity too).
    """
    shapes = [dict(n) for n in nodes] + [dict(g.resources) for g in groups if g.max_count]
    capacity = _total(nodes, groups)
    wanted: Resources = {}
    for at, pool, replicas in _pools(config):
        need = _add(replica_bundles(pool))
        _check_one_node(at, pool, need, shapes)
        _check_count(at, pool, need, replicas, nodes, groups, capacity)
        wanted = _add([wanted, {k: v * replicas for k, v in need.items()}])
    short = _short(wanted, capacity)
    if short:
        raise PlacementError(
            f"the pools together need {_fmt(wanted, short)}, the cluster has "
            f"{_fmt(capacity, short)}")


def check_cluster(config: Config) -> None:
    """`check_placement` against the Ray cluster this process is connected to."""
    import ray

    nodes = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
    check_placement(config, nodes, autoscaler_groups())


def autoscaler_groups() -> list[NodeGroup]:
    """The node types the cluster's autoscaler may start; none when it has no autoscaler."""
    from ray._private import state  # what Ray Data reads for the same question

    config = None
    with contextlib.suppress(Exception):  # a private API: without it, judge the live nodes
        config = state.state.get_cluster_config()
    if config is None:
        return []
    return [NodeGroup({k: float(v) for k, v in group.resources.items()}, group.max_count)
            for group in config.node_group_configs]


def _pools(config: Config) -> Iterable[tuple[str, PoolConfig, int]]:
    """(where, pool, replicas Serve starts) of every pool."""
    for m, model in enumerate(config.models):
        for p, pool in enumerate(model.pools):
            at = f"models[{m}].pools[{p}] (model {model.name!r}, pool {pool_name(pool, p)!r})"
            yield at, pool, max(1, pool.replicas.min)


def _check_one_node(at: str, pool: PoolConfig, need: Resources,
                    shapes: Sequence[Resources]) -> None:
    if any(not _short(need, shape) for shape in shapes):
        return
    largest = _largest(need, shapes)
    if pool.tensor_parallel == 1:
        raise PlacementError(f"{at}: a replica needs {_fmt(need)} on one node, but {largest}")
    raise PlacementError(
        f"{at}: tensor_parallel {pool.tensor_parallel} needs {pool.tensor_parallel} bundles "
        f"of {_fmt(pool.resources)} on ONE node ({STRATEGY}; bundle 0 also holds the "
        f"replica's {_fmt(replica_actor_resources(pool))}), {_fmt(need)} in all, but {largest}")


def _check_count(at: str, pool: PoolConfig, need: Resources, replicas: int,
                 nodes: Sequence[Resources], groups: Sequence[NodeGroup],
                 capacity: Resources) -> None:
    fit = sum(_copies(need, node) for node in nodes)
    for group in groups:
        fit += _times(_copies(need, group.resources), group.max_count)
    if fit >= replicas:
        return
    total = {k: v * replicas for k, v in need.items()}
    short = _short(total, capacity)
    runs = f"{replicas} replica{'s' if replicas > 1 else ''} (replicas.min "
    runs += f"{pool.replicas.min})" if pool.replicas.min else "0 runs 1)"
    if short:
        raise PlacementError(
            f"{at}: {runs} of {_fmt(need, short)} each need {_fmt(total, short)} in all, "
            f"but the cluster has {_fmt(capacity, short)}")
    raise PlacementError(
        f"{at}: {runs} of {_fmt(need)}, each on one node, but the nodes have room "
        f"for only {int(fit)}")


def _copies(need: Resources, node: Resources) -> float:
    """How many replicas of `need` one node holds."""
    counts = [math.floor(node.get(k, 0.0) / v + _EPS) for k, v in need.items() if v > 0]
    return min(counts) if counts else math.inf


def _short(need: Resources, have: Resources) -> list[str]:
    """The resources of `need` that `have` lacks."""
    return [k for k, v in need.items() if v > have.get(k, 0.0) + _EPS]


def _largest(need: Resources, shapes: Sequence[Resources]) -> str:
    """Why no node holds `need`: the most of a missing resource one node has."""
    for key, amount in need.items():
        most = max((shape.get(key, 0.0) for shape in shapes), default=0.0)
        if amount > most + _EPS:
            return f"the largest node has {most:g} {key}"
    return "no node has all of it at once"


def _total(nodes: Sequence[Resources], groups: Sequence[NodeGroup]) -> Resources:
    """All the resources the cluster has now, or may have once its autoscaler grows it."""
    total = _add(nodes)
    for group in groups:
        for key, amount in group.resources.items():
            total[key] = total.get(key, 0.0) + _times(amount, group.max_count)
    return total


def _times(amount: float, count: int) -> float:
    """`amount` on each of `count` nodes of a group (-1: as many as wanted)."""
    if not amount or not count:
        return 0.0
    return math.inf if count < 0 else amount * count


def _add(parts: Iterable[Resources]) -> Resources:
    out: Resources = {}
    for part in parts:
        for key, amount in part.items():
            out[key] = out.get(key, 0.0) + amount
    return out


def _fmt(resources: Resources, keys: Iterable[str] | None = None) -> str:
    chosen = list(resources) if keys is None else list(keys)
    return "{" + ", ".join(f"{k}: {resources.get(k, 0.0):g}" for k in chosen) + "}"
