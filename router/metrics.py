"""`GET /metrics`: the whole cluster's metrics in Prometheus' text format, from any replica.

A scrape lands on one router replica (Serve's proxy picks it), so nothing here is that
replica's own: counters and histograms are the sums every router and worker process adds
to Redis (`raylane.cluster.metrics.Recorder`, at most about a second behind), and gauges
are read at scrape time from the queues, the worker registry and the autoscaling policy's
last decisions. Like `/health` it needs no API key (`router/auth.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import msgspec
from fastapi import APIRouter, Request
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from starlette.responses import Response

from raylane.cluster.autoscale import read_decisions
from raylane.cluster.config import ModelConfig, pool_name
from raylane.cluster.errors import ServiceUnavailable
from raylane.cluster.metrics import (
    DEAD_LETTERS,
    ENGINE_SLOTS,
    ENGINE_SLOTS_BUSY,
    GAUGES,
    MICROS,
    PRIORITY_BINS,
    QUEUE_DEPTH,
    QUEUE_RUNNING,
    RECORDED,
    REPLICAS,
    REPLICAS_TARGET,
    Family,
    Labels,
    decode_field,
    priority_label,
)
from raylane.cluster.registry import live_workers
from raylane.router.state import RouterState
from raylane.router.status import replica_target

metrics_api = APIRouter()


@metrics_api.get("/metrics")
async def metrics(request: Request) -> Response:
    state: RouterState = request.app.state.raylane
    try:
        families = await collect(state)
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    return Response(generate_latest(_Families(families)), media_type=CONTENT_TYPE_PLAIN_0_0_4)


async def collect(state: RouterState) -> list[Metric]:
    """Every metric of the cluster, as of now."""
    families = recorded(await state.redis.hgetall(state.keys.metrics()))
    gauges = {f.name: GaugeMetricFamily(f.name, f.help, labels=f.labels) for f in GAUGES}
    for model in state.config.models:
        await _model_gauges(state, model, gauges)
    return families + list(gauges.values())


def recorded(raw: Mapping[bytes | str, bytes | str]) -> list[Metric]:
    """The counters and histograms from the metrics hash's fields."""
    known = {f.name: f for f in RECORDED}
    sums: dict[str, dict[Labels, dict[str, int]]] = {}
    for field, value in raw.items():
        try:
            name, labels, part = decode_field(field)
        except msgspec.DecodeError:
            continue
        family = known.get(name)
        if family is not None and len(labels) == len(family.labels):  # else another version's
            sums.setdefault(name, {}).setdefault(labels, {})[part] = int(value)
    return [_family(f, sums.get(f.name, {})) for f in RECORDED]


def _family(family: Family, series: dict[Labels, dict[str, int]]) -> Metric:
    if family.kind == "counter":
        counter = CounterMetricFamily(family.name, family.help, labels=family.labels)
        for labels, parts in sorted(series.items()):
            counter.add_metric(labels, parts.get("", 0))
        return counter
    histogram = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    for labels, parts in sorted(series.items()):
        total, buckets = 0, []
        for index, bound in enumerate((*family.buckets, math.inf)):
            total += parts.get(str(index), 0)
            buckets.append((floatToGoString(bound), total))
        histogram.add_metric(labels, buckets, parts.get("sum", 0) / MICROS)
    return histogram


async def _model_gauges(state: RouterState, model: ModelConfig,
                        gauges: dict[str, GaugeMetricFamily]) -> None:
    keys, name = state.keys, model.name
    queues = [("", keys.queue(name))] + [
        (pool_name(p, i), keys.queue(name, pool_name(p, i)))
        for i, p in enumerate(model.pools) if p.overflow]
    async with state.redis.pipeline(transaction=False) as pipe:
        for _, key in queues:
            for _, low, high in PRIORITY_BINS:
                pipe.zcount(key, low, high)
        pipe.zcard(keys.leases(name))
        pipe.zcard(keys.dead(name))
        counts = await pipe.execute()
    default = priority_label(model.queue.default_priority)
    for q, (queue, _) in enumerate(queues):
        row = counts[q * len(PRIORITY_BINS):(q + 1) * len(PRIORITY_BINS)]
        for (label, _, _), depth in zip(PRIORITY_BINS, row, strict=True):
            if depth or label == default:  # the default's series is always there, even at 0
                gauges[QUEUE_DEPTH.name].add_metric((name, queue, label), depth)
    gauges[QUEUE_RUNNING.name].add_metric((name,), counts[-2])
    gauges[DEAD_LETTERS.name].add_metric((name,), counts[-1])
    workers = await live_workers(state.redis, keys, name)
    decisions = await read_decisions(state.redis, keys, name)
    for index, pool in enumerate(model.pools):
        labels = (name, pool_name(pool, index))
        mine = [w for w in workers if w.pool == labels[1]]
        gauges[REPLICAS.name].add_metric(labels, len(mine))
        target = replica_target(pool, decisions.get(labels[1]))
        if target is not None:
            gauges[REPLICAS_TARGET.name].add_metric(labels, target)
        gauges[ENGINE_SLOTS.name].add_metric(labels, sum(w.slots for w in mine))
        gauges[ENGINE_SLOTS_BUSY.name].add_metric(labels, sum(w.busy for w in mine))


class _Families:
    """Metrics already collected, in the shape `generate_latest` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
