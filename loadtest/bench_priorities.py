"""Priorities and deadlines at 2x overload, on the sim engine: who waits, who makes it.

    python -m loadtest.bench_priorities                  # both parts, 20 s of load each run
    python -m loadtest.bench_priorities --part priorities --duration 30 --top-share 0.25

One raylane serves three `sim` models whose capacity is known: every slot answers a
request (17 tokens, 0.2 s to the first, 20 tokens/s) in 1.0 s, so a pool of N slots
serves N requests/s. Requests arrive open-loop (Poisson, seeded: every run of a part
gets the same schedule) at twice the capacity for `--duration` seconds.

Part 1, priorities. Model `prio`: one pool of 4 slots (4 requests/s), offered 8/s,
`--top-share` of them at priority 0 and the rest at priority 9, with a deadline long
enough that nothing times out. Then the same schedule with every request at one priority
(first come, first served): the baseline. Queue wait is raylane's own measure (the
`timings.queue_ms` of each stream's last chunk; without it, time to first token minus
that of an idle model). It prints p50 and p95 per class in both runs, and the ratios.

Part 2, deadlines. `--tight-share` of the requests must be answered within `--tight-s`,
the rest within `--loose-s` (the clients give up then). Capacity 6 requests/s (a `main`
pool of 4 slots and a `spare` one of 2), offered 12/s, three ways:

- client deadline only (the baseline): raylane is not told the deadlines
  (`X-Request-Timeout: 300`), queues every request and answers in arrival order; a client
  that gives up disconnects, which cancels its request;
- deadline-aware admission: `X-Request-Timeout` carries each deadline; raylane refuses at
  once (429 `wait_exceeds_deadline`) a request whose estimated wait misses it, and never
  starts one whose deadline passed while queued; same two pools, both draining the queue;
- plus overflow routing: the same, with `spare` an `overflow: true` pool that takes only
  the requests the shared queue would make late.

A request meets its deadline when its whole answer arrived within it. It prints, per way,
the share of tight, loose and all requests that met theirs, the shares refused at once
(and how fast) or timed out, and the ratios of the met shares against the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.benchkit import client, complete, on_free_port, percentile_ms, running

TOKENS = 17
SIM = {"tokens_per_s": 20.0, "ttft_s": 0.2}
SERVICE_S = SIM["ttft_s"] + (TOKENS - 1) / SIM["tokens_per_s"]
LONG_S = 300.0
TOP, BOTTOM = 0, 9


@dataclass(frozen=True)
class Send:
    """One request of a schedule."""

    at_s: float
    kind: str
    """The request's class: top / bottom, or tight / loose."""
    priority: int | None
    deadline_s: float
    """When the client gives up (seconds after sending)."""
    told_s: float
    """The deadline raylane is told (`X-Request-Timeout`)."""


@dataclass
class Outcome:
    send: Send
    status: str
    """ok, late (the client gave up), refused (429 at once), timeout (raylane's 504), or
    the error code."""
    took_s: float
    ttft_s: float = 0.0
    queue_s: float | None = None
    """raylane's measure of the request's queue wait, when the answer carries it."""


def schedule(rate: float, duration_s: float, seed: int) -> list[float]:
    """Poisson arrival times at `rate` per second over `duration_s`."""
    rng, at, out = random.Random(seed), 0.0, []
    while (at := at + rng.expovariate(rate)) < duration_s:
        out.append(at)
    return out


async def send_one(openai_client: Any, model: str, index: int, send: Send) -> Outcome:
    import openai

    began = time.perf_counter()
    body = {"priority": send.priority} if send.priority is not None else None
    headers = {"X-Request-Timeout": f"{send.told_s:g}"}
    try:
        async with asyncio.timeout(send.deadline_s):
            result = await complete(openai_client, model, f"{send.kind} request {index}",
                                    TOKENS, headers=headers, body=body)
    except TimeoutError:
        return Outcome(send, "late", time.perf_counter() - began)
    except openai.APIError as exc:
        status = {"wait_exceeds_deadline": "refused", "queue_timeout": "timeout",
                  "deadline_exceeded": "timeout"}.get(exc.code or "", exc.code or str(exc))
        return Outcome(send, status, time.perf_counter() - began)
    queue = result.queue_ms / 1000 if result.queue_ms is not None else None
    return Outcome(send, "ok", result.total_s, result.ttft_s, queue)


async def drive(url: str, model: str, sends: Sequence[Send]) -> list[Outcome]:
    """Send every request at its time (open loop); wait for all of them to end."""
    openai_client = client(url)
    began = time.perf_counter()

    async def at(index: int, send: Send) -> Outcome:
        await asyncio.sleep(max(0.0, began + send.at_s - time.perf_counter()))
        return await send_one(openai_client, model, index, send)

    try:
        outcomes = await asyncio.gather(*(at(i, s) for i, s in enumerate(sends)))
        await asyncio.sleep(2.0)  # cancelled jobs leave the queue before the next run
        return list(outcomes)
    finally:
        await openai_client.close()


def queue_waits(outcomes: list[Outcome], idle_ttft_s: float) -> tuple[str, dict[str, list]]:
    """The queue waits of the answered requests per class, and where they came from:
    raylane's own measure, else time to first token beyond that of an idle model."""
    answered = [o for o in outcomes if o.status == "ok"]
    if all(o.queue_s is not None for o in answered):
        source, waits = "raylane's timings.queue_ms", [o.queue_s or 0.0 for o in answered]
    else:
        source = f"time to first token - {idle_ttft_s * 1000:.0f} ms (idle)"
        waits = [max(0.0, o.ttft_s - idle_ttft_s) for o in answered]
    by_kind: dict[str, list] = {}
    for outcome, wait in zip(answered, waits, strict=True):
        by_kind.setdefault(outcome.send.kind, []).append(wait)
    return source, by_kind


async def idle_ttft(url: str, model: str) -> float:
    """Median time to first token of a few requests on the idle model."""
    openai_client = client(url)
    try:
        runs = [await complete(openai_client, model, f"idle {i}", TOKENS) for i in range(5)]
    finally:
        await openai_client.close()
    return statistics.median(r.ttft_s for r in runs)


def priorities(url: str, args: argparse.Namespace) -> None:
    capacity = 4 / SERVICE_S
    arrivals = schedule(2 * capacity, args.duration, args.seed)
    rng = random.Random(args.seed + 1)
    kinds = ["top" if rng.random() < args.top_share else "bottom" for _ in arrivals]
    idle = asyncio.run(idle_ttft(url, "prio"))
    print(f"\npriorities: {len(arrivals)} requests in {args.duration:g} s "
          f"({2 * capacity:g}/s on a pool serving {capacity:g}/s), "
          f"{kinds.count('top')} at priority {TOP}, {kinds.count('bottom')} at {BOTTOM}")
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for way, ranked in (("with priorities", True), ("one priority (FIFO)", False)):
        sends = [Send(t, k, (TOP if k == "top" else BOTTOM) if ranked else None, LONG_S, LONG_S)
                 for t, k in zip(arrivals, kinds, strict=True)]
        began = time.perf_counter()
        outcomes = asyncio.run(drive(url, "prio", sends))
        source, waits = queue_waits(outcomes, idle)
        print(f"  {way}: {sum(map(len, waits.values()))}/{len(outcomes)} answered in "
              f"{time.perf_counter() - began:.1f} s; queue wait from {source}")
        rows[way] = {kind: (percentile_ms(waits.get(kind, []), 50),
                            percentile_ms(waits.get(kind, []), 95)) for kind in ("top", "bottom")}
    print(f"  {'':<20} {'top p50':>9} {'top p95':>9} {'bottom p50':>11} {'bottom p95':>11}")
    for way, row in rows.items():
        print(f"  {way:<20} {row['top'][0]:>7.0f}ms {row['top'][1]:>7.0f}ms "
              f"{row['bottom'][0]:>9.0f}ms {row['bottom'][1]:>9.0f}ms")
    ours, fifo = rows["with priorities"], rows["one priority (FIFO)"]
    print(f"  p95 queue wait, top / bottom with priorities: "
          f"{_ratio(ours['top'][1], ours['bottom'][1], 3)}; top with priorities / FIFO: "
          f"{_ratio(ours['top'][1], fifo['top'][1], 3)}")


def deadlines(url: str, args: argparse.Namespace) -> None:
    capacity = 6 / SERVICE_S
    arrivals = schedule(2 * capacity, args.duration, args.seed)
    rng = random.Random(args.seed + 2)
    tight = [rng.random() < args.tight_share for _ in arrivals]
    print(f"\ndeadlines: {len(arrivals)} requests in {args.duration:g} s "
          f"({2 * capacity:g}/s on pools serving {capacity:g}/s), {sum(tight)} tight "
          f"({args.tight_s:g} s), {len(tight) - sum(tight)} loose ({args.loose_s:g} s)")
    ways = (("client deadline only", "shared", False), ("deadline-aware admission", "shared",
            True), ("+ overflow routing", "overflow", True))
    shares = {}
    print(f"  {'':<26} {'class':<6} {'met':>5} {'refused':>8} {'(p50)':>7} {'timeout':>8} "
          f"{'late':>5} {'other':>6}")
    for way, model, told in ways:
        sends = []
        for at, is_tight in zip(arrivals, tight, strict=True):
            deadline = args.tight_s if is_tight else args.loose_s
            sends.append(Send(at, "tight" if is_tight else "loose", None, deadline,
                              deadline if told else LONG_S))
        outcomes = asyncio.run(drive(url, model, sends))
        shares[way] = [deadline_row(way if kind == "tight" else "", kind, outcomes)
                       for kind in ("tight", "loose", "all")]
    base = shares["client deadline only"]
    for way, share in list(shares.items())[1:]:
        print(f"  met, {way} / client deadline only: tight "
              f"{_ratio(share[0], base[0])}, loose {_ratio(share[1], base[1])}, "
              f"all {_ratio(share[2], base[2])}")


def deadline_row(label: str, kind: str, outcomes: list[Outcome]) -> float:
    """Print the outcomes of one class of requests (or all); return its met share."""
    group = [o for o in outcomes if kind == "all" or o.send.kind == kind]
    counts = Counter(o.status for o in group)
    known = ("ok", "refused", "timeout", "late")

    def share(status: str) -> str:
        return f"{counts[status] / max(1, len(group)):.0%}"

    refused = [o.took_s for o in group if o.status == "refused"]
    fast = f"{percentile_ms(refused, 50):.0f}ms" if refused else "-"
    print(f"  {label:<26} {kind:<6} {share('ok'):>5} {share('refused'):>8} "
          f"{fast:>7} {share('timeout'):>8} {share('late'):>5} "
          f"{sum(n for status, n in counts.items() if status not in known):>6}")
    if kind == "all" and set(counts) - set(known):
        print(f"    other outcomes: {sorted(set(counts) - set(known))}")
    return counts["ok"] / max(1, len(group))


def _ratio(value: float, base: float, digits: int = 2) -> str:
    return f"{value / base:.{digits}f}" if base else "n/a (baseline 0)"


def config() -> Any:
    from raylane.cluster.config import Config, ModelConfig, PoolConfig, QueueConfig

    def pool(name: str, slots: int, overflow: bool = False) -> PoolConfig:
        return PoolConfig(backend="sim", name=name, slots=slots, options=SIM,
                          resources={"CPU": 0.1}, overflow=overflow)

    queue = QueueConfig(max_depth=10_000, timeout_s=LONG_S)
    return Config(models=[
        ModelConfig(name="prio", queue=queue, pools=[pool("main", 4)]),
        ModelConfig(name="shared", queue=queue, pools=[pool("main", 4), pool("spare", 2)]),
        ModelConfig(name="overflow", queue=queue,
                    pools=[pool("main", 4), pool("spare", 2, overflow=True)]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["priorities", "deadlines", "both"], default="both")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    parser.add_argument("--top-share", type=float, default=0.25)
    parser.add_argument("--tight-share", type=float, default=0.25)
    parser.add_argument("--tight-s", type=float, default=3.0)
    parser.add_argument("--loose-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with running(on_free_port(config())) as url:
        if args.part in ("priorities", "both"):
            priorities(url, args)
        if args.part in ("deadlines", "both"):
            deadlines(url, args)


if __name__ == "__main__":
    main()
