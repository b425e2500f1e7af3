"""Admission and routing by estimated wait: where a request can still meet its deadline.

A model's jobs normally go to its shared queue, which its pools drain together. The
estimated wait there is the number of queued jobs that would start first (more urgent
priorities, and those of its own priority ahead of its fair-share turn) divided by the
model's measured drain rate, plus its measured time per job. It only matters when jobs
are waiting, i.e. when the workers are saturated and the drain rate is their capacity; an
idle model admits everything to the shared queue.

When that estimate would miss the request's deadline and the model has overflow pools
(pools that take nothing from the shared queue, e.g. a CPU pool beside a GPU pool), the
request goes to the overflow pool that can answer it soonest, if one can in time, into
that pool's own queue. A pool's estimate is its own queue ahead of the request divided by
its own drain rate, plus its time per job; a pool with a free slot and nothing queued
counts as free, a pool without live replicas is skipped. Only when no queue can make it
is the request refused (429 `wait_exceeds_deadline`). Routing never lets a request
overtake the shared queue: the pools that drain it serve it in priority and arrival order.

The measures are read at most once a second per model or pool and router replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from raylane.cluster.config import ModelConfig, pool_name, takers
from raylane.cluster.errors import InvalidRequest, WaitExceedsDeadline
from raylane.cluster.messages import Job
from raylane.cluster.queue import Drain, JobQueue
from raylane.cluster.registry import live_workers

RATE_TTL_S = 1.0
MARGIN = 0.9
"""Share of the remaining time the estimate may use: a queue's drain rate wobbles around
its average, and an estimate that just fits would miss the deadline half the time."""


@dataclass(frozen=True)
class Estimate:
    wait_s: float
    ahead: int
    rate: float


class Capacity:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._drains: dict[tuple[str, str | None], tuple[float, Drain]] = {}
        self._light: dict[str, tuple[float, bool]] = {}

    async def light(self, model: str) -> bool:
        """Whether a live worker of `model` serves its light lane (`LIGHT_LANE`), at most a
        second old: none does while the model is scaled to zero, or runs only workers from
        before the lane."""
        now = time.monotonic()
        cached = self._light.get(model)
        if cached is None or now - cached[0] > RATE_TTL_S:
            workers = await live_workers(self.queue.redis, self.queue.keys, model)
            cached = (now, any(w.light for w in workers))
            self._light[model] = cached
        return cached[1]

    async def drain(self, model: str, pool: str | None = None) -> Drain:
        """The drain measures of a model or one of its pools, at most a second old."""
        now = time.monotonic()
        cached = self._drains.get((model, pool))
        if cached is None or now - cached[0] > RATE_TTL_S:
            cached = (now, await self.queue.drain(model, pool))
            self._drains[(model, pool)] = cached
        return cached[1]

    async def route(self, jobs: Sequence[Job], model: ModelConfig) -> str | None:
        """The pool whose own queue should take `jobs`, or None for the shared queue.

        Raises WaitExceedsDeadline when no queue is expected to answer them in time.
        """
        job = jobs[0]
        if not takers(model, job.priority):
            raise InvalidRequest(f"No pool of model '{job.model}' takes priority "
                                 f"{job.priority}.", param="priority")
        budget = (job.deadline - time.time()) * MARGIN
        shared = await self._shared_estimate(jobs, model)
        if shared is None or shared.wait_s <= budget:
            return None
        best: tuple[float, str] | None = None
        for pool, name in takers(model, job.priority):
            if not pool.overflow:
                continue
            wait = await self._pool_estimate(jobs, name)
            if wait is not None and (best is None or wait < best[0]):
                best = (wait, name)
        if best is not None and best[0] <= budget:
            return best[1]
        wait = min(shared.wait_s, best[0] if best else math.inf)
        remaining = job.deadline - time.time()
        raise WaitExceedsDeadline(
            f"The model '{job.model}' is overloaded: the estimated wait ({_secs(wait)}, "
            f"{shared.ahead} requests ahead at {shared.rate:.1f}/s) exceeds this request's "
            f"deadline ({remaining:.1f} s).",
            retry_after=max(1, math.ceil(min(wait, 3600) - remaining)),
        )

    async def _shared_estimate(self, jobs: Sequence[Job], model: ModelConfig) -> Estimate | None:
        """The wait in the shared queue; None when there are no grounds to refuse it."""
        job = jobs[0]
        if not any(not pool.overflow for pool, _ in takers(model, job.priority)):
            return Estimate(math.inf, 0, 0.0)  # no pool takes this priority from it
        ahead = await self.queue.ahead(job.model, job.priority, tenant=job.tenant)
        if ahead == 0:
            return None
        drain = await self._shared_drain(model)
        if drain.per_s <= 0:
            return None  # nothing measured yet: no grounds to refuse
        wait = (ahead + len(jobs) - 1) / drain.per_s + drain.service_s
        return Estimate(wait, ahead, drain.per_s)

    async def _shared_drain(self, model: ModelConfig) -> Drain:
        """How fast the shared queue drains: the model's measures less those of its overflow
        pools, whose jobs count among the model's but never come from the shared queue."""
        drain = await self.drain(model.name)
        overflow = [await self.drain(model.name, pool_name(pool, index))
                    for index, pool in enumerate(model.pools) if pool.overflow]
        if not overflow:
            return drain
        per_s = drain.per_s - sum(d.per_s for d in overflow)
        if per_s <= 0:
            return Drain(0.0, 0.0)
        busy = drain.per_s * drain.service_s - sum(d.per_s * d.service_s for d in overflow)
        return Drain(per_s, max(busy, 0.0) / per_s)

    async def _pool_estimate(self, jobs: Sequence[Job], pool: str) -> float | None:
        """The wait in an overflow pool's own queue; None when it cannot be told."""
        job = jobs[0]
        workers = [w for w in await live_workers(self.queue.redis, self.queue.keys, job.model)
                   if w.pool == pool]
        if not workers:
            return None  # no replica to serve it (scaled to zero, or lost)
        ahead = await self.queue.ahead(job.model, job.priority, pool, job.tenant)
        drain = await self.drain(job.model, pool)
        if ahead == 0 and any(w.busy < w.slots for w in workers):
            return drain.service_s
        if drain.per_s <= 0:
            return None
        return (ahead + len(jobs) - 1) / drain.per_s + drain.service_s


def _secs(wait: float) -> str:
    return "unbounded" if math.isinf(wait) else f"{wait:.1f} s"
