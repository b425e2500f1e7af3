"""vLLM through raylane against vLLM's own OpenAI server, same checkpoint, same load.

    python -m loadtest.bench_vllm --concurrency 8 --requests 32 --max-tokens 128

Both sides serve the same checkpoint (by default the bundled SmolLM2-135M, converted
from its GGUF) with the same engine settings (context, batch size, KV cache, eager or
compiled), one after the other on the same machine, and take the same load: `requests`
streamed completions, `concurrency` at a time, greedy, distinct prompts. It prints, for
each side, output tokens/s over the whole run, median time to first token and median
time per output token (TPOT), and the ratios raylane / vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROMPTS = ["Here is a story about {}:", "The history of {} begins", "Ten facts about {}:",
           "A letter to {}:"]
TOPICS = ["dragons", "the sea", "Rome", "bread", "rivers", "owls", "glass", "trains"]


@dataclass
class Result:
    tokens: int
    ttft_s: float
    total_s: float

    @property
    def tpot_s(self) -> float:
        return (self.total_s - self.ttft_s) / max(1, self.tokens - 1)


async def one(client: object, model: str, prompt: str, max_tokens: int) -> Result:
    began = time.perf_counter()
    first, tokens = 0.0, 0
    stream = await client.completions.create(  # type: ignore[attr-defined]
        model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            first = first or time.perf_counter() - began
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return Result(tokens, first, time.perf_counter() - began)


async def load(url: str, model: str, args: argparse.Namespace) -> tuple[float, list[Result]]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0,
                                timeout=600)
    prompts = [PROMPTS[i % len(PROMPTS)].format(TOPICS[i % len(TOPICS)] + f" #{i}")
               for i in range(args.requests)]
    await one(client, model, "Warm up:", 4)
    gate = asyncio.Semaphore(args.concurrency)

    async def gated(prompt: str) -> Result:
        async with gate:
            return await one(client, model, prompt, args.max_tokens)

    began = time.perf_counter()
    results = await asyncio.gather(*(gated(p) for p in prompts))
    took = time.perf_counter() - began
    await client.close()
    return took, results


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the vLLM server exited")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError("the vLLM server did not start")


def vllm_server(checkpoint: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(checkpoint), "--served-model-name", "bench",
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
               "--max-model-len", str(args.max_model_len),
               "--max-num-seqs", str(args.concurrency), "--disable-log-stats"]
    if args.eager:
        command.append("--enforce-eager")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": f"{args.kv_cache_gb:g}"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def raylane_config(port: int, args: argparse.Namespace) -> object:
    from raylane.cluster.config import Config, ModelConfig, PoolConfig, RouterConfig

    options = {"max_model_len": args.max_model_len, "kv_cache_gb": args.kv_cache_gb,
               "enforce_eager": args.eager, "dtype": "bfloat16"}
    pool = PoolConfig(backend="vllm", model=args.model, options=options,
                      slots=args.concurrency, resources={"CPU": 1})
    return Config(router=RouterConfig(port=port), models=[ModelConfig(name="bench",
                                                                      pools=[pool])])


def report(name: str, took: float, results: list[Result]) -> tuple[float, float, float]:
    tokens = sum(r.tokens for r in results)
    tps = tokens / took
    ttft = statistics.median(r.ttft_s for r in results) * 1000
    tpot = statistics.median(r.tpot_s for r in results) * 1000
    print(f"{name:>8}: {tps:7.1f} output tokens/s  ttft {ttft:7.1f} ms  tpot {tpot:6.2f} ms  "
          f"({tokens} tokens, {len(results)} requests in {took:.1f} s)")
    return tps, ttft, tpot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled:smollm2-135m")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gb", type=float, default=1.0)
    parser.add_argument("--eager", action="store_true", help="enforce_eager on both sides")
    args = parser.parse_args()

    from raylane.cluster.redis_server import free_port
    from raylane.cluster.runtime import Cluster
    from raylane.cluster.weights import resolve_weights
    from raylane.workers.checkpoints import hf_checkpoint

    checkpoint = hf_checkpoint(resolve_weights(args.model))
    port = free_port()
    server = vllm_server(checkpoint, port, args)
    try:
        began = time.monotonic()
        wait_healthy(f"http://127.0.0.1:{port}", server, 600)
        print(f"vLLM server up in {time.monotonic() - began:.1f} s")
        base = asyncio.run(load(f"http://127.0.0.1:{port}", "bench", args))
    finally:
        server.terminate()
        server.wait(60)
    cluster = Cluster(raylane_config(free_port(), args))  # type: ignore[arg-type]
    print(f"raylane up in {cluster.start():.1f} s")
    try:
        ours = asyncio.run(load(cluster.url, "bench", args))
    finally:
        cluster.stop()
    b = report("vLLM", *base)
    o = report("raylane", *ours)
    print(f"ratio raylane/vLLM: throughput {o[0] / b[0]:.3f}, ttft {o[1] / b[1]:.2f}x, "
          f"tpot {o[2] / b[2]:.3f}")


if __name__ == "__main__":
    main()
