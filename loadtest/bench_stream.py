"""One stream through raylane against the same model called directly, in one run.

    python -m loadtest.bench_stream                 # starts raylane with the embedded default
    python -m loadtest.bench_stream --url http://127.0.0.1:8000

The baseline loads the bundled GGUF in this process with the settings of the
default pool (same context, same threads) and generates with the same prompt,
seed and sampling parameters, so both sides produce the same tokens. It prints
time to first token and output tokens/s for each side and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import msgspec

from raylane.cluster.backends import LlamaCppOptions
from raylane.cluster.config import default_config
from raylane.cluster.messages import Done, SamplingParams, TextPrompt
from raylane.cluster.weights import resolve_weights

PROMPT = "Here is a long story about a dragon who learned to sing:"


@dataclass
class Run:
    ttft_s: float
    tokens: int
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second after the first token."""
        return (self.tokens - 1) / max(1e-9, self.total_s - self.ttft_s)


async def direct(options: LlamaCppOptions, max_tokens: int, runs: int) -> list[Run]:
    """The engine in this process, warmed up like a worker's, then `runs` generations."""
    from raylane.workers.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(resolve_weights("bundled:smollm2-135m"), options, slots=1)
    await engine.start()
    try:
        out = []
        for seed in (-1, *range(runs)):
            began = time.perf_counter()
            first = 0.0
            params = SamplingParams(max_tokens=8 if seed < 0 else max_tokens, temperature=0.7,
                                    seed=max(seed, 0))
            async for item in engine.generate("bench", TextPrompt(PROMPT), params):
                first = first or time.perf_counter() - began
                if isinstance(item, Done):
                    out.append(Run(first, item.completion_tokens, time.perf_counter() - began))
        return out[1:]
    finally:
        await engine.close()


def through_raylane(url: str, max_tokens: int, seed: int) -> Run:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)
    began = time.perf_counter()
    first = 0.0
    tokens = 0
    stream = client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=max_tokens,
                                       temperature=0.7, seed=seed, stream=True,
                                       stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            first = first or time.perf_counter() - began
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return Run(first, tokens, time.perf_counter() - began)


def summary(name: str, runs: list[Run]) -> tuple[float, float]:
    tps = statistics.median(r.tokens_per_s for r in runs)
    ttft = statistics.median(r.ttft_s for r in runs) * 1000
    print(f"{name:>10}: {tps:7.1f} tokens/s  ttft {ttft:6.1f} ms  "
          f"({runs[0].tokens} tokens, {len(runs)} runs)")
    return tps, ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running raylane (default: start one here)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, help="n_threads on both sides (default: the "
                        "embedded default's)")
    args = parser.parse_args()
    config = default_config()
    model = config.models[0]
    pool = model.pools[0]
    if args.threads:
        pool = msgspec.structs.replace(pool, options={**pool.options, "n_threads": args.threads})
        config = msgspec.structs.replace(
            config, models=[msgspec.structs.replace(model, pools=[pool])])
    options = LlamaCppOptions(**pool.options)
    print(f"llama.cpp options: {pool.options}")
    cluster = None
    url = args.url
    if url is None:
        from raylane.cluster.redis_server import free_port
        from raylane.cluster.runtime import Cluster

        config = msgspec.structs.replace(
            config, router=msgspec.structs.replace(config.router, port=free_port()))
        cluster = Cluster(config)
        print(f"started raylane in {cluster.start():.1f} s")
        url = cluster.url
    try:
        through_raylane(url, 8, 0)  # warm up
        ours = [through_raylane(url, args.max_tokens, seed) for seed in range(args.runs)]
        base = asyncio.run(direct(options, args.max_tokens, args.runs))
    finally:
        if cluster is not None:
            cluster.stop()
    base_tps, base_ttft = summary("direct", base)
    our_tps, our_ttft = summary("raylane", ours)
    print(f"ratio raylane/direct: tokens/s {our_tps / base_tps:.3f}, "
          f"ttft +{our_ttft - base_ttft:.1f} ms")


if __name__ == "__main__":
    main()
