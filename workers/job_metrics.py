"""What a worker replica measures of the jobs it runs: queue wait, first token, token pace.

Times from the job's admission use the router's clock (`Job.created_at`) against this
host's, as deadlines do; a cluster's hosts keep their clocks in step. Nothing here talks
to Redis: the `Recorder` adds the observations up and flushes them once a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from raylane.cluster.messages import Delta, Done, Embeddings, Job, LeasedJob
from raylane.cluster.metrics import (
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    QUEUE_WAIT,
    TPOT,
    TTFT,
    Recorder,
    priority_label,
)


class PoolMetrics:
    """The observations of one worker replica of one pool."""

    def __init__(self, recorder: Recorder, model: str, pool: str) -> None:
        self.recorder = recorder
        self.pool = (model, pool)

    def clock(self, leased: LeasedJob) -> JobClock:
        """Start timing a job just leased; its first attempt's wait is observed now."""
        job = leased.job
        labels = (*self.pool, priority_label(job.priority))
        if leased.attempt == 1:
            self.recorder.observe(QUEUE_WAIT, labels, time.time() - job.created_at)
        return JobClock(self, job, labels)


@dataclass
class JobClock:
    """One attempt of one job: first token, then its pace and tokens when it finishes."""

    metrics: PoolMetrics
    job: Job
    labels: tuple[str, str, str]
    first: float | None = None
    """Monotonic time of the first generated token."""

    def item(self, item: Delta | Done) -> None:
        """Note what the engine produced; observes the first token and the finish."""
        tokens = item.tokens if isinstance(item, Delta) else item.completion_tokens
        recorder = self.metrics.recorder
        if self.first is None and tokens:
            self.first = time.monotonic()
            recorder.observe(TTFT, self.labels, time.time() - self.job.created_at)
        if isinstance(item, Done):
            recorder.count(GENERATION_TOKENS, self.metrics.pool, item.completion_tokens)
            recorder.count(PROMPT_TOKENS, self.metrics.pool, item.prompt_tokens)
            if self.first is not None and item.completion_tokens > 1:
                recorder.observe(TPOT, self.metrics.pool,
                                 (time.monotonic() - self.first) / (item.completion_tokens - 1))

    def embedded(self, embeddings: Embeddings) -> None:
        self.metrics.recorder.count(PROMPT_TOKENS, self.metrics.pool, embeddings.prompt_tokens)
