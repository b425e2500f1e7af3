"""What the benchmarks share: timed streamed completions, a gated load, servers to compare.

A benchmark starts the thing it measures (raylane in this process with `running`, a
baseline server as a subprocess with `wait_healthy`), drives it with `complete` or
`gated_load` through the OpenAI SDK, and prints figures with `percentile_ms`. Nothing here
decides what a benchmark compares: each script says that in its own docstring.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PROMPTS = ["Here is a story about {}:", "The history of {} begins", "Ten facts about {}:",
           "A letter to {}:"]
TOPICS = ["dragons", "the sea", "Rome", "bread", "rivers", "owls", "glass", "trains"]


@dataclass
class Result:
    """One streamed completion as the client saw it."""

    tokens: int
    """Completion tokens from the final usage chunk; -1 when the server sent none."""
    ttft_s: float
    total_s: float
    text: str = ""
    queue_ms: float | None = None
    """raylane's own measure of the time the request waited in its queue (the `timings`
    extension field of a stream's last chunk); None from other servers."""

    @property
    def tpot_s(self) -> float:
        """Time per output token after the first."""
        return (self.total_s - self.ttft_s) / max(1, self.tokens - 1)


def prompts(count: int) -> list[str]:
    """`count` distinct prompts (no two share a prefix cache entry end to end)."""
    return [PROMPTS[i % len(PROMPTS)].format(TOPICS[i % len(TOPICS)] + f" #{i}")
            for i in range(count)]


def client(url: str) -> Any:
    """An OpenAI SDK client of the server at `url`, without retries or its own timeouts."""
    import openai

    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0,
                              timeout=600)


async def complete(
    openai_client: Any, model: str, prompt: str, max_tokens: int, *,
    headers: dict[str, str] | None = None, body: dict[str, Any] | None = None,
    usage: bool = True,
) -> Result:
    """Stream one greedy completion; time its first text and its end."""
    began = time.perf_counter()
    out = Result(-1, 0.0, 0.0)
    text = []
    extra = {"stream_options": {"include_usage": True}} if usage else {}
    stream = await openai_client.completions.create(
        model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
        extra_headers=headers, extra_body=body, **extra)
    async with stream:  # closed, and the server told, when the caller gives up
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                out.ttft_s = out.ttft_s or time.perf_counter() - began
                text.append(chunk.choices[0].text)
            if chunk.usage:
                out.tokens = chunk.usage.completion_tokens
            timings = getattr(chunk, "timings", None)
            if isinstance(timings, dict) and "queue_ms" in timings:
                out.queue_ms = timings["queue_ms"]
    out.total_s, out.text = time.perf_counter() - began, "".join(text)
    return out


async def gated_load(
    url: str, model: str, texts: Sequence[str], concurrency: int, max_tokens: int, *,
    headers: dict[str, str] | None = None, body: dict[str, Any] | None = None,
    usage: bool = True,
) -> tuple[float, list[Result]]:
    """One warm-up request, then every prompt, `concurrency` at a time: (seconds, results)."""
    openai_client = client(url)
    try:
        await complete(openai_client, model, "Warm up:", 4, headers=headers, body=body,
                       usage=usage)
        gate = asyncio.Semaphore(concurrency)

        async def gated(prompt: str) -> Result:
            async with gate:
                return await complete(openai_client, model, prompt, max_tokens,
                                      headers=headers, body=body, usage=usage)

        began = time.perf_counter()
        results = await asyncio.gather(*(gated(p) for p in texts))
        return time.perf_counter() - began, list(results)
    finally:
        await openai_client.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float,
                 name: str) -> None:
    """Wait until GET `url` answers, or raise naming the server that failed to start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {name} server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the {name} server did not answer {url} within {timeout_s:.0f} s")


@contextmanager
def running(config: Any) -> Iterator[str]:
    """raylane started in this process on `config` (a Config), on a Ray of its own (never
    one that `ray start` left running on this host, which `ray.init()` would join); yields
    its URL."""
    from raylane.cluster.runtime import Cluster

    cluster = Cluster(config, ray_address="local")
    print(f"raylane up in {cluster.start():.1f} s")
    try:
        yield cluster.url
    finally:
        cluster.stop()


def on_free_port(config: Any) -> Any:
    """`config` with its router on a free port."""
    import msgspec

    from raylane.cluster.redis_server import free_port

    return msgspec.structs.replace(
        config, router=msgspec.structs.replace(config.router, port=free_port()))


def percentile_ms(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of seconds, in milliseconds; nan for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1] * 1000
