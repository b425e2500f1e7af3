"""Soak: mixed traffic while workers are killed and Redis restarts; every outcome tallied.

    python -m loadtest.soak                                  # full: 2,000 requests
    python -m loadtest.soak --requests 300 --kill-every 3 5 --redis-restarts 1   # short (CI)

It starts `raylane serve` on a `sim` model with several replicas and an external
redis-server it controls, then sends requests (streaming and not, several
priorities, some abandoned by the client mid-way) from concurrent clients, while
it SIGKILLs a busy worker replica every `--kill-every` seconds and restarts Redis
`--redis-restarts` times. The sim engine's answers are known in advance (it
repeats the prompt's words), so each request's outcome is classified exactly:

- completed       the whole expected answer, once, in order
- explicit error  an HTTP error status, or an error event ending a stream
- cancelled       abandoned by the client on purpose (the server must free its slot)
- lost            no outcome by the deadline + 5 s
- duplicated      text repeated or out of order
- truncated       a success that ended early without saying so

The bar is 0 lost, 0 duplicated, 0 truncated; the script exits 1 otherwise, or
if the cluster still holds jobs after the traffic stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from raylane.cluster.redis_server import RedisServer, free_port

CONFIG = """\
router: {{port: {port}}}
models:
  - name: soak
    queue: {{max_depth: 5000, timeout_s: 30, lease_s: 2, max_attempts: 3}}
    pools:
      - backend: sim
        options: {{tokens_per_s: 40}}
        slots: 8
        resources: {{CPU: 0.1}}
        replicas: {{min: {replicas}, max: {replicas}}}
"""
DEADLINE_S = 30.0


def expected(words: list[str], tokens: int) -> str:
    return " ".join(words[i % len(words)] for i in range(tokens))


def _error(status: int | str, body: dict) -> str:
    return f"explicit error: {status} {body['error'].get('code')}"


def classify(text: str, want: str, finished: bool) -> str:
    if not want.startswith(text):
        return "duplicated"
    if finished and text != want:
        return "truncated"
    return "completed" if finished else "explicit error"


async def one(client: httpx.AsyncClient, i: int, rng: random.Random) -> str:
    words = [f"r{i}w{j}" for j in range(rng.randint(1, 4))]
    tokens = rng.randint(4, 40)
    body = {"model": "soak", "messages": [{"role": "user", "content": " ".join(words)}],
            "max_tokens": tokens, "priority": rng.choice([-1, 0, 0, 5])}
    want = expected(words, tokens)
    call = _stream if rng.random() < 0.5 else _whole
    cancel_after = rng.uniform(0.05, 0.8) if rng.random() < 0.1 else None
    try:
        async with asyncio.timeout(DEADLINE_S + 5) as overall:
            if cancel_after is None:
                return await call(client, body, want)
            try:
                async with asyncio.timeout(cancel_after):
                    return await call(client, body, want)
            except TimeoutError:
                if overall.expired():
                    raise
                return "cancelled"
    except TimeoutError:
        return "lost"
    except httpx.HTTPError as exc:
        return f"explicit error: {type(exc).__name__}"  # the connection failed: the client knows


async def _whole(client: httpx.AsyncClient, body: dict, want: str) -> str:
    response = await client.post("/v1/chat/completions", json=body)
    if response.status_code != 200:
        return _error(response.status_code, response.json())
    choice = response.json()["choices"][0]
    return classify(choice["message"]["content"], want, finished=True)


async def _stream(client: httpx.AsyncClient, body: dict, want: str) -> str:
    text = ""
    async with client.stream("POST", "/v1/chat/completions",
                             json={**body, "stream": True}) as response:
        if response.status_code != 200:
            await response.aread()
            return _error(response.status_code, response.json())
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return classify(text, want, finished=True)
            chunk = json.loads(line[6:])
            if "error" in chunk:
                verdict = classify(text, want, finished=False)
                return _error("stream", chunk) if verdict == "explicit error" else verdict
            text += chunk["choices"][0]["delta"].get("content") or ""
    # The stream ended without [DONE] or an error event: a silent cut.
    return "truncated" if want.startswith(text) else "duplicated"


class Chaos:
    """Kills busy workers and restarts Redis on a schedule."""

    def __init__(self, url: str, redis: RedisServer, kill_every: tuple[float, float],
                 redis_restarts: int) -> None:
        self.url = url
        self.redis = redis
        self.kill_every = kill_every
        self.restarts_at = [(k + 1) / (redis_restarts + 1) for k in range(redis_restarts)]
        """Shares of the traffic done at which Redis restarts."""
        self.kills = 0
        self.restarts = 0

    async def run(self, rng: random.Random, progress: Callable[[], float]) -> None:
        next_kill = time.monotonic() + rng.uniform(*self.kill_every)
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            if self.restarts_at and progress() >= self.restarts_at[0]:
                self.restarts_at.pop(0)
                self._restart_redis()
            if now >= next_kill and await self._kill_busy_worker():
                next_kill = now + rng.uniform(*self.kill_every)

    def _restart_redis(self) -> None:
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.stop()
        self.redis = RedisServer(binary=self.redis.binary, port=self.redis.port).start()
        self.restarts += 1
        print(f"  restarted redis ({self.restarts})", flush=True)

    async def _kill_busy_worker(self) -> bool:
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                status = (await client.get("/raylane/status")).json()
        except (httpx.HTTPError, ValueError):
            return False
        workers = status["models"][0]["pools"][0]["workers"]
        busy = [w for w in workers if w["busy"]]
        if not busy:
            return False
        victim = random.choice(busy)
        try:
            os.kill(victim["pid"], signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kills += 1
        print(f"  killed worker pid {victim['pid']} ({self.kills})", flush=True)
        return True


async def traffic(url: str, requests: int, concurrency: int, chaos: Chaos,
                  rng: random.Random) -> Counter[str]:
    tally: Counter[str] = Counter()
    ids = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=DEADLINE_S + 10, limits=limits) as client:
        async def user(seed: int) -> None:
            own = random.Random(seed)
            for i in ids:
                tally[await one(client, i, own)] += 1
                if sum(tally.values()) % 250 == 0:
                    print(f"  {sum(tally.values())} requests: {dict(tally)}", flush=True)

        chaos_task = asyncio.create_task(
            chaos.run(rng, lambda: sum(tally.values()) / requests))
        try:
            await asyncio.gather(*(user(rng.randrange(1 << 30)) for _ in range(concurrency)))
        finally:
            chaos_task.cancel()
    return tally


async def settled(url: str, timeout_s: float = 60) -> dict:
    """Wait until the cluster holds no job (queued or running); returns its queue status."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            status = (await client.get("/raylane/status")).json()
            if "models" not in status:
                raise SystemExit(f"status failed: {status}")
            queue = status["models"][0]["queue"]
            if (queue["depth"] == 0 and queue["running"] == 0) or time.monotonic() > deadline:
                return queue
            await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(30.0, 60.0),
                        metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="raylane-soak-"))
    port = free_port()
    (root / "raylane.yaml").write_text(CONFIG.format(port=port, replicas=args.replicas))
    redis = RedisServer().start()
    log = (root / "raylane.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "raylane.cluster.cli", "serve", str(root / "raylane.yaml")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "REDIS_URL": redis.url})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(root / "raylane.log", serve)
        chaos = Chaos(url, redis, tuple(args.kill_every), args.redis_restarts)
        began = time.monotonic()
        tally = asyncio.run(traffic(url, args.requests, args.concurrency, chaos, rng))
        took = time.monotonic() - began
        left = asyncio.run(settled(url))
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(60)
        log.close()
        chaos_redis = chaos.redis if "chaos" in locals() else redis
        chaos_redis.stop()
    return report(tally, chaos, took, left, args)


def _wait_serving(log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while b"raylane: serving" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"raylane did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def report(tally: Counter[str], chaos: Chaos, took: float, left: dict,
           args: argparse.Namespace) -> int:
    print(f"\n{sum(tally.values())} requests in {took:.0f} s, {args.concurrency} clients, "
          f"{args.replicas} replicas; {chaos.kills} workers killed, {chaos.restarts} Redis "
          "restarts")
    print("| outcome | requests |\n|---|---|")
    errors = sum(n for k, n in tally.items() if k.startswith("explicit error"))
    print(f"| completed | {tally['completed']} |\n| explicit error | {errors} |")
    for outcome in ("cancelled", "lost", "duplicated", "truncated"):
        print(f"| {outcome} | {tally[outcome]} |")
    print(f"after the run: {left['depth']} queued, {left['running']} running")
    for outcome, count in sorted(tally.items()):
        if outcome.startswith("explicit error:"):
            print(f"  {outcome.removeprefix('explicit error: ')}: {count}")
    bad = tally["lost"] + tally["duplicated"] + tally["truncated"]
    return 1 if bad or left["depth"] or left["running"] else 0


if __name__ == "__main__":
    sys.exit(main())
