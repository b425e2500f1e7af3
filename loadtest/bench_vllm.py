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
from pathlib import Path

from loadtest.benchkit import Result, gated_load, on_free_port, prompts, running, wait_healthy


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


def raylane_config(args: argparse.Namespace) -> object:
    from raylane.cluster.config import Config, ModelConfig, PoolConfig, RouterConfig

    options = {"max_model_len": args.max_model_len, "kv_cache_gb": args.kv_cache_gb,
               "enforce_eager": args.eager, "dtype": "bfloat16"}
    pool = PoolConfig(backend="vllm", model=args.model, options=options,
                      slots=args.concurrency, resources={"CPU": 1},
                      stream_interval_s=args.stream_interval_s)
    return Config(router=RouterConfig(ingress=args.ingress),
                  models=[ModelConfig(name="bench", pools=[pool])])


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
    parser.add_argument("--ingress", choices=["auto", "direct", "proxy"], default="auto",
                        help="raylane's router.ingress (auto: direct, as raylane serve has it)")
    parser.add_argument("--stream-interval-s", type=float, default=0.0,
                        help="the raylane pool's stream_interval_s (vLLM's server keeps its "
                             "default of one token per chunk)")
    args = parser.parse_args()

    from raylane.cluster.redis_server import free_port
    from raylane.cluster.weights import resolve_weights
    from raylane.workers.checkpoints import hf_checkpoint

    checkpoint = hf_checkpoint(resolve_weights(args.model))
    texts = prompts(args.requests)
    port = free_port()
    server = vllm_server(checkpoint, port, args)
    try:
        began = time.monotonic()
        wait_healthy(f"http://127.0.0.1:{port}/health", server, 600, "vLLM")
        print(f"vLLM server up in {time.monotonic() - began:.1f} s")
        base = asyncio.run(gated_load(f"http://127.0.0.1:{port}", "bench", texts,
                                      args.concurrency, args.max_tokens))
    finally:
        server.terminate()
        server.wait(60)
    with running(on_free_port(raylane_config(args))) as url:
        ours = asyncio.run(gated_load(url, "bench", texts, args.concurrency, args.max_tokens))
    b = report("vLLM", *base)
    o = report("raylane", *ours)
    print(f"ratio raylane/vLLM: throughput {o[0] / b[0]:.3f}, ttft {o[1] / b[1]:.2f}x, "
          f"tpot {o[2] / b[2]:.3f}")


if __name__ == "__main__":
    main()
