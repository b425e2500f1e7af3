"""Admission by estimated wait: refuse up front what could not start before its deadline.

The estimate is the number of queued jobs that would start first (same or more
urgent priority) divided by the model's measured drain rate, plus its measured
time per job. It only applies when jobs are waiting, i.e. when the workers are
saturated and the drain rate is their capacity; an idle model admits everything.
The measures are read at most once a second per model and router replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from raylane.cluster.errors import WaitExceedsDeadline
from raylane.cluster.messages import Job
from raylane.cluster.queue import Drain, JobQueue

RATE_TTL_S = 1.0
MARGIN = 0.9
"""Share of the remaining time the estimate may use: a queue's drain rate wobbles around
its average, and an estimate that just fits would miss the deadline half the time."""


class Capacity:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._drains: dict[str, tuple[float, Drain]] = {}

    async def drain(self, model: str) -> Drain:
        """The model's drain measures, at most a second old."""
        now = time.monotonic()
        cached = self._drains.get(model)
        if cached is None or now - cached[0] > RATE_TTL_S:
            cached = (now, await self.queue.drain(model))
            self._drains[model] = cached
        return cached[1]

    async def check(self, jobs: Sequence[Job]) -> None:
        """Raise WaitExceedsDeadline if the jobs' estimated wait exceeds their deadline."""
        job = jobs[0]
        ahead = await self.queue.ahead(job.model, job.priority)
        if ahead == 0:
            return
        drain = await self.drain(job.model)
        if drain.per_s <= 0:
            return  # nothing measured yet: no grounds to refuse
        rate = drain.per_s
        wait = (ahead + len(jobs) - 1) / rate + drain.service_s
        remaining = job.deadline - time.time()
        if wait > remaining * MARGIN:
            raise WaitExceedsDeadline(
                f"The model '{job.model}' is overloaded: the estimated wait ({wait:.1f} s, "
                f"{ahead} requests ahead at {rate:.1f}/s) exceeds this request's deadline "
                f"({remaining:.1f} s).",
                retry_after=max(1, math.ceil(wait - remaining)),
            )
