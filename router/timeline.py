"""When a request's jobs reach each step, on the router's clock, and the timings it reports.

Workers and routers may run on different hosts, so every time here is this router
replica's `time.monotonic()`: when it accepted the request, when it enqueued the jobs,
when each job's `started` event (a worker leased it) and its answer arrived. From them:

- `queue_ms`: enqueue → the `started` event of the attempt that answered (a lost
  attempt counts as waiting);
- `ttft_ms`: accepted → the first text (or the end, for an empty answer);
- `generation_ms`: `started` → the answer's end;
- `total_ms`: accepted → the end of the whole answer.

With several jobs (`n` > 1, or several prompts), `queue_ms` and `generation_ms` are those
of the slowest job and `ttft_ms` that of the first text of any choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.responses import Response

QUEUE_WAIT_HEADER = "X-Raylane-Queue-Wait-Ms"
"""Header of a non-streaming answer: its `queue_ms`, whole milliseconds."""


@dataclass
class Timeline:
    """The steps of one request's jobs (index → time)."""

    accepted: float = field(default_factory=time.monotonic)
    enqueued: float | None = None
    pool: str | None = None
    """The queue the jobs went to: None for the model's shared queue, else a pool's own."""
    started: dict[int, float] = field(default_factory=dict)
    first_output: float | None = None
    ended: dict[int, float] = field(default_factory=dict)

    def queued(self, pool: str | None) -> None:
        self.enqueued, self.pool = time.monotonic(), pool

    def start(self, index: int) -> None:
        self.started[index] = time.monotonic()

    def restart(self, index: int) -> None:
        """A job is queued again (its worker was lost): it waits until its next start."""
        self.started.pop(index, None)

    def output(self, index: int, final: bool) -> None:
        """A job's text arrived; with `final`, its answer ended."""
        now = time.monotonic()
        if self.first_output is None:
            self.first_output = now
        if final:
            self.ended[index] = now

    @property
    def waiting(self) -> bool:
        """Enqueued, and no job of the request has started (or finished) yet."""
        return self.enqueued is not None and not self.started and not self.ended

    def timings(self) -> dict[str, float]:
        """The request's timings (ms), as the `timings` field of OpenAI answers shows them."""
        now = time.monotonic()
        enqueued = self.accepted if self.enqueued is None else self.enqueued
        queue = max((t - enqueued for t in self.started.values()), default=0.0)
        generation = max((self.ended[i] - t for i, t in self.started.items()
                          if i in self.ended), default=0.0)
        first = now if self.first_output is None else self.first_output
        end = max(self.ended.values(), default=now)
        return {"queue_ms": _ms(queue), "ttft_ms": _ms(first - self.accepted),
                "generation_ms": _ms(generation), "total_ms": _ms(end - self.accepted)}

    def queue_wait_ms(self) -> int:
        return round(self.timings()["queue_ms"])


def with_queue_wait(response: Response, timeline: Timeline) -> Response:
    """`response` with the request's measured queue wait in `X-Raylane-Queue-Wait-Ms`."""
    response.headers[QUEUE_WAIT_HEADER] = str(timeline.queue_wait_ms())
    return response


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 1)
