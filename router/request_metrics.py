"""Count each request once, by how it ended, and time the ones answered in full.

`JobRunner.run` keeps one `RequestTally` per request: the request is `ok` when its last
job's answer arrives (before the caller has it, since a caller may stop listening right
then), otherwise it ends with an error, or `cancelled` when the caller stopped listening
first (client gone, stream closed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from raylane.cluster.errors import QueueFull, RaylaneError, RequestTimeout, ServiceUnavailable
from raylane.cluster.messages import Answer, Job
from raylane.cluster.metrics import REQUEST_DURATION, REQUESTS, Recorder, priority_label


def outcome(exc: BaseException) -> tuple[str, str]:
    """(outcome, code) of a request that ended with `exc`."""
    if isinstance(exc, GeneratorExit | asyncio.CancelledError):
        return "cancelled", ""
    if not isinstance(exc, RaylaneError):
        return "error", "internal"
    code = exc.code or exc.type
    if isinstance(exc, QueueFull):
        return "rejected", code
    if isinstance(exc, RequestTimeout):
        return "timeout", code
    if isinstance(exc, ServiceUnavailable):
        return "unavailable", code
    return ("invalid" if exc.status < 500 else "error"), code


@dataclass
class RequestTally:
    recorder: Recorder | None
    jobs: int
    model: str
    priority: str
    created_at: float
    answered: int = 0
    counted: bool = False

    @classmethod
    def of(cls, recorder: Recorder | None, jobs: Sequence[Job], model: str) -> RequestTally:
        return cls(recorder, len(jobs), model, priority_label(jobs[0].priority),
                   jobs[0].created_at)

    def see(self, event: object) -> None:
        """Note an event; the request is `ok` once every job has its answer."""
        if isinstance(event, Answer):
            self.answered += 1
            if self.answered == self.jobs:
                self._count("ok", "")
                if self.recorder is not None:
                    self.recorder.observe(REQUEST_DURATION, (self.model, self.priority),
                                          time.time() - self.created_at)

    def fail(self, exc: BaseException) -> None:
        """The request ended with `exc` (unless it was already answered)."""
        self._count(*outcome(exc))

    def _count(self, result: str, code: str) -> None:
        if self.counted or self.recorder is None:
            return
        self.counted = True
        self.recorder.count(REQUESTS, (self.model, self.priority, result, code))
