"""Router + queue overhead: raylane on a `sim` pool against the same engine served directly.

    python -m loadtest.bench_router             # both ingresses; concurrency 1, 16, 64; ramp
    python -m loadtest.bench_router --ingress proxy --concurrency 1 16 64 --duration 10

Both sides run raylane's `SimEngine` with the same settings (`--tokens-per-s`, default
10,000, and `--max-tokens` 4: a short answer, so the serving path dominates):

- baseline: `loadtest/sim_server.py`, one uvicorn process answering
  `/v1/chat/completions` with the engine (OpenAI's SSE chunks, no queue);
- raylane: `raylane serve` in this process's Ray, one router replica, one sim pool
  (one replica with `--slots` slots), an embedded Redis; once for each `--ingress`
  (`router.ingress`: `direct`, the router replica serves the port itself; `proxy`, Serve's
  HTTP proxy in front of it), each against the baseline anew.

It first times `GET /health` and 300 non-streaming answers one after the other on both
sides, and splits raylane's time with the `timings` of its answers: from the router
accepting the request to the answer's end (the queue, the worker, the inbox) against the
rest (HTTP to the router replica and back, through Serve's proxy under `proxy`, and the
router's request handling). One asyncio httpx client then sends streamed chat completions,
closed loop, at each concurrency for `--duration` seconds per side, and prints p50/p99
latency and time to first token, raylane's added milliseconds and the ratios. Then it ramps
raylane's concurrency (`--ramp`) until requests/s stops growing by 5%, and prints the best
requests/s, per core of this machine, and per CPU-second that Serve's proxy and the
router replica used (the router's own cost, with every other process's CPU beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import psutil

from loadtest.benchkit import on_free_port, percentile_ms, running, wait_healthy
from raylane.cluster.config import parse_config
from raylane.cluster.redis_server import free_port

CONFIG = """\
router: {{ingress: {ingress}, replicas: {{min: 1, max: 1}}}}
models:
  - name: sim
    queue: {{max_depth: 100000, timeout_s: 60}}
    pools:
      - backend: sim
        options: {{tokens_per_s: {rate}}}
        slots: {slots}
        stream_interval_s: {interval}
        resources: {{CPU: 0.1}}
"""
ROLES = {"proxy": "ProxyActor", "router": "ServeReplica:raylane:Router",
         "worker": "ServeReplica:raylane:worker", "redis": "redis-server"}
"""Processes whose CPU the ramp reports, by a part of their command line."""


@dataclass
class Sample:
    """Latencies (s) of one side at one concurrency."""

    total: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return len(self.total) / self.seconds


async def one(client: httpx.AsyncClient, body: dict, sample: Sample) -> None:
    began = time.perf_counter()
    first = 0.0
    done = False
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = response.status_code == 200
                elif line.startswith("data: ") and not first:
                    first = time.perf_counter() - began
    except httpx.HTTPError:
        done = False
    if done and first:
        sample.total.append(time.perf_counter() - began)
        sample.ttft.append(first)
    else:
        sample.errors += 1


async def load(url: str, concurrency: int, seconds: float, max_tokens: int) -> Sample:
    """Closed loop: `concurrency` callers, each sending its next request on an answer."""
    body = {"model": "sim", "messages": [{"role": "user", "content": "one two three four"}],
            "max_tokens": max_tokens, "stream": True}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sample = Sample()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        for _ in range(concurrency):  # warm: open the connections
            await one(client, body, Sample())
        stop = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < stop:
                await one(client, body, sample)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        sample.seconds = time.perf_counter() - began
    return sample


async def health_ms(url: str, requests: int = 200) -> float:
    """Median latency of GET /health: the HTTP path without the queue."""
    took = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(requests):
            began = time.perf_counter()
            (await client.get("/health")).raise_for_status()
            took.append(time.perf_counter() - began)
    return percentile_ms(took, 50)


async def split_ms(url: str, max_tokens: int, requests: int = 300) -> dict[str, float]:
    """Medians of sequential non-streaming answers: the client's whole time, and the
    `timings` raylane reports (router accepts the request → answer ends, queue wait)."""
    body = {"model": "sim", "messages": [{"role": "user", "content": "one two three four"}],
            "max_tokens": max_tokens}
    took: list[float] = []
    timings: dict[str, list[float]] = {"total_ms": [], "queue_ms": []}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(requests):
            began = time.perf_counter()
            response = (await client.post("/v1/chat/completions", json=body)).raise_for_status()
            took.append(time.perf_counter() - began)
            reported = response.json().get("timings", {})
            for key, values in timings.items():
                values.append(reported.get(key, 0.0) / 1000)
    return {"client": percentile_ms(took, 50),
            **{key: percentile_ms(values, 50) for key, values in timings.items()}}


def compare(urls: dict[str, str], args: argparse.Namespace) -> None:
    """`urls`: the baseline ("direct") and raylane, in that order."""
    ours_side = list(urls)[1]
    health = {side: asyncio.run(health_ms(url)) for side, url in urls.items()}
    print("GET /health p50 (no queue): " +
          ", ".join(f"{side} {ms:.1f} ms" for side, ms in health.items()))
    split = {side: asyncio.run(split_ms(url, args.max_tokens)) for side, url in urls.items()}
    ours = split[ours_side]
    print(f"non-streaming, concurrency 1, p50: direct {split['direct']['client']:.1f} ms, "
          f"{ours_side} {ours['client']:.1f} ms, of which {ours['total_ms']:.1f} ms from the "
          f"router accepting the request to the answer's end (queue wait "
          f"{ours['queue_ms']:.1f} ms); the rest is HTTP to the router and back\n")
    print("| concurrency | side | req/s | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    added = []
    for concurrency in args.concurrency:
        got = {side: asyncio.run(load(url, concurrency, args.duration, args.max_tokens))
               for side, url in urls.items()}
        for side, s in got.items():
            figures = " | ".join(f"{percentile_ms(values, q):.1f}"
                                 for values in (s.total, s.ttft) for q in (50, 99))
            print(f"| {concurrency} | {side} | {s.per_s:,.0f} | {figures} | {s.errors} |",
                  flush=True)
        base, ours = got["direct"], got[ours_side]
        added.append((concurrency, *(percentile_ms(mine, q) - percentile_ms(theirs, q)
                                     for mine, theirs, q in ((ours.total, base.total, 50),
                                                             (ours.total, base.total, 99),
                                                             (ours.ttft, base.ttft, 50))),
                      ours.per_s / base.per_s))
    print("\n| concurrency | added p50 ms | added p99 ms | added TTFT p50 ms | req/s ratio |")
    print("|---|---|---|---|---|")
    for concurrency, p50, p99, ttft, ratio in added:
        print(f"| {concurrency} | {p50:+.1f} | {p99:+.1f} | {ttft:+.1f} | {ratio:.2f} |")


def ramp(url: str, args: argparse.Namespace) -> None:
    """Raise concurrency until requests/s stops growing; CPU of each part at each step."""
    processes = _processes()
    print(f"\n| concurrency | req/s | p50 ms | errors | CPU cores used: "
          f"{' · '.join([*ROLES, 'client'])} |")
    print("|---|---|---|---|---|")
    best: tuple[float, int, float] = (0.0, 0, 0.0)
    for concurrency in args.ramp:
        before = _cpu(processes)
        sample = asyncio.run(load(url, concurrency, args.duration, args.max_tokens))
        cores = {role: (used - before[role]) / sample.seconds
                 for role, used in _cpu(processes).items()}
        print(f"| {concurrency} | {sample.per_s:,.0f} | {percentile_ms(sample.total, 50):.1f} | "
              f"{sample.errors} | {' · '.join(f'{c:.2f}' for c in cores.values())} |",
              flush=True)
        router_cores = cores["proxy"] + cores["router"]
        if sample.per_s < best[0] * 1.05:
            break
        best = (sample.per_s, concurrency, router_cores)
    per_s, concurrency, router_cores = best
    print(f"\nmost sustained: {per_s:,.0f} req/s at concurrency {concurrency} with one router "
          f"replica: {per_s / (os.cpu_count() or 1):,.0f} req/s per core of this "
          f"{os.cpu_count()}-core machine, {per_s / max(router_cores, 1e-9):,.0f} req/s per "
          f"CPU-second of the proxy and router ({router_cores:.2f} cores)")


def _processes() -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {role: [] for role in ROLES}
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        for role, mark in ROLES.items():
            if mark in line:
                found[role].append(process)
    found["client"] = [psutil.Process()]
    return found


def _cpu(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    used = {}
    for role, group in processes.items():
        total = 0.0
        for process in group:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        used[role] = total
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress", nargs="+", choices=["direct", "proxy"],
                        default=["direct", "proxy"],
                        help="raylane's router.ingress, one raylane run each (proxy: Serve's "
                             "HTTP proxy, or HAProxy with RAY_SERVE_ENABLE_HA_PROXY=1)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--ramp", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256],
                        help="concurrency steps of the throughput ramp (none: skip it)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--tokens-per-s", type=float, default=10_000.0)
    parser.add_argument("--slots", type=int, default=512, help="slots of the sim pool")
    parser.add_argument("--stream-interval-s", type=float, default=0.0,
                        help="the sim pool's stream_interval_s (raylane side only)")
    args = parser.parse_args()

    port = free_port()
    direct = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "loadtest.sim_server", "--port", str(port),
                               "--tokens-per-s", str(args.tokens_per_s)])
    try:
        wait_healthy(f"{direct}/health", server, 30, "sim baseline")
        for ingress in args.ingress:
            config = on_free_port(parse_config(CONFIG.format(
                ingress=ingress, rate=args.tokens_per_s, slots=args.slots,
                interval=args.stream_interval_s)))
            with running(config) as url:
                print(f"\n## raylane, router.ingress {ingress}: {os.cpu_count()} cores, load "
                      f"average {os.getloadavg()[0]:.1f}", flush=True)
                compare({"direct": direct, f"raylane {ingress}": url}, args)
                if args.ramp:
                    ramp(url, args)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
