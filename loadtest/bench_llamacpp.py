"""llama.cpp through raylane against llama-cpp-python's own server, same GGUF, same load.

    python -m loadtest.bench_llamacpp                          # concurrency 1, 4 and 16
    python -m loadtest.bench_llamacpp --threads 2 --slots 2 --concurrency 1 4 16

The baseline is `python -m llama_cpp.server` (its dependencies: `pip install -e
".[bench]"`) on the bundled SmolLM2-135M GGUF. It runs one generation at a time (a lock
around its one `Llama`), so the like-for-like raylane side is one replica with one slot,
with the same n_threads, n_threads_batch, n_ctx and n_batch, logits kept for the last
token only (the server's `logits_all` turned off, as raylane's), the same sampler chain,
and every stream served to its end (the server's `interrupt_requests` turned off: by
default it cuts a stream short as soon as another request waits). Two more raylane sides
show its own settings: the embedded default (what `raylane serve` runs with no config;
skipped when it equals the like-for-like side, as on a 2-core machine) and, with
`--slots N`, one replica with N slots of n_threads / N threads each (the same cores,
N generations at once).

llama.cpp's CPU backend runs each computation on an OpenMP team of the calling thread
(libgomp here). The server calls llama.cpp from whichever thread of its pool takes the
next token, so one stream wakes up to one team per pool thread, and with libgomp's
default waiting (spinning between computations) those teams take the cores from each
other: its single streams ran 4 to 10 times slower on 2 cores. raylane's engine keeps one
thread per slot. So that the baseline measures the server and not this interplay, every
side runs with `OMP_WAIT_POLICY=PASSIVE` (threads sleep between tokens; raylane's own
streams were not slower for it); `--omp-wait-policy default` shows the other case.

Every side takes the same load at each concurrency level: `--requests` streamed greedy
completions (default max(8, 2 x concurrency)) of up to `--max-tokens` tokens, distinct
prompts, `concurrency` at a time. Output tokens are counted by tokenizing each answer with
the GGUF's own tokenizer, the same way on every side (the server sends no usage in
streams). It prints, per side and level, output tokens/s over the whole level, median and
p95 time to first token, and the ratios against the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.benchkit import (
    Result,
    gated_load,
    on_free_port,
    percentile_ms,
    prompts,
    running,
    wait_healthy,
)

SERVER = "llama_cpp.server"
# The sampler chain of raylane's llama.cpp engine; the server's defaults differ
# (top_k 40, min_p 0.05, repeat_penalty 1.1), which would cost it time and change tokens.
SAMPLER = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
# The server has no deadline; raylane's default (60 s) would refuse the last requests of a
# level whose queue on one slot is longer than that.
NO_DEADLINE = {"X-Request-Timeout": "3600"}


@dataclass
class Level:
    """One side at one concurrency: seconds for the whole level, and every request."""

    took_s: float
    results: list[Result]
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.took_s

    def ttft_ms(self, q: float) -> float:
        return percentile_ms([r.ttft_s for r in self.results], q)


def server_command(weights: Path, port: int, args: argparse.Namespace) -> list[str]:
    """llama_cpp.server with the like-for-like side's settings."""
    settings = {"model": weights, "model_alias": "bench", "host": "127.0.0.1", "port": port,
                "n_ctx": args.n_ctx, "n_batch": args.n_batch, "n_threads": args.threads,
                "n_threads_batch": os.cpu_count() or 1,  # raylane's Llama leaves the default
                "logits_all": False, "interrupt_requests": False, "verbose": False}
    return [sys.executable, "-m", SERVER, *(f"--{k}={v}" for k, v in settings.items())]


def measure(url: str, model: str, args: argparse.Namespace, baseline: bool) -> dict[int, Level]:
    """Every concurrency level against one server."""
    out = {}
    for concurrency in args.concurrency:
        texts = prompts(args.requests or max(8, 2 * concurrency))
        took, results = asyncio.run(gated_load(
            url, model, texts, concurrency, args.max_tokens, headers=NO_DEADLINE,
            body=SAMPLER if baseline else None, usage=not baseline))
        out[concurrency] = Level(took, results)
        print(f"  concurrency {concurrency:>2}: {len(results)} requests in {took:.1f} s")
    return out


def baseline(weights: Path, args: argparse.Namespace) -> dict[int, Level]:
    from raylane.cluster.redis_server import free_port

    port = free_port()
    server = subprocess.Popen(server_command(weights, port, args), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        began = time.monotonic()
        wait_healthy(f"http://127.0.0.1:{port}/v1/models", server, 120, SERVER)
        print(f"{SERVER} up in {time.monotonic() - began:.1f} s")
        return measure(f"http://127.0.0.1:{port}", "bench", args, baseline=True)
    finally:
        server.terminate()
        server.wait(30)


def raylane_sides(args: argparse.Namespace) -> dict[str, Any]:
    """Name -> Config of each raylane side; the default one only where it differs."""
    from raylane.cluster.backends import options_for
    from raylane.cluster.config import Config, ModelConfig, PoolConfig, default_config

    def side(slots: int, threads: int) -> Config:
        options = {"n_ctx": args.n_ctx, "n_batch": args.n_batch, "n_threads": threads}
        pool = PoolConfig(backend="llama.cpp", model="bundled:smollm2-135m", options=options,
                          slots=slots, resources={"CPU": 1.0})
        return Config(models=[ModelConfig(name="bench", pools=[pool])])

    sides = {"raylane 1 slot": side(1, args.threads)}
    default = default_config()
    pool = default.models[0].pools[0]
    like = sides["raylane 1 slot"].models[0].pools[0]
    if (pool.slots, pool.replicas, options_for("llama.cpp", pool.options)) != (
            like.slots, like.replicas, options_for("llama.cpp", like.options)):
        sides["raylane default"] = default
    else:
        print(f"raylane's embedded default ({pool.slots} slot, {pool.options}) is the "
              "like-for-like side here")
    if args.slots > 1:
        sides[f"raylane {args.slots} slots"] = side(args.slots, max(1, args.threads // args.slots))
    return sides


def count_tokens(weights: Path, levels: list[Level]) -> None:
    """Tokenize every answer with the GGUF's tokenizer (the same count on every side)."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(weights), vocab_only=True, verbose=False)
    for level in levels:
        level.tokens = sum(len(vocab.tokenize(r.text.encode(), add_bos=False))
                           for r in level.results)


def report(sides: dict[str, dict[int, Level]]) -> None:
    print(f"\n{'side':<22} {'conc':>4} {'tokens/s':>9} {'ttft p50':>9} {'ttft p95':>9} "
          f"{'tokens':>7} {'requests':>8}")
    for name, levels in sides.items():
        for concurrency, level in levels.items():
            print(f"{name:<22} {concurrency:>4} {level.tokens_per_s:>9.1f} "
                  f"{level.ttft_ms(50):>7.0f}ms {level.ttft_ms(95):>7.0f}ms "
                  f"{level.tokens:>7} {len(level.results):>8}")
    base = sides[SERVER]
    print()
    for name, levels in sides.items():
        if name == SERVER:
            continue
        for concurrency, level in levels.items():
            ref = base[concurrency]
            print(f"ratio {name} / {SERVER} at concurrency {concurrency:>2}: tokens/s "
                  f"{level.tokens_per_s / ref.tokens_per_s:.3f}, ttft p50 "
                  f"{level.ttft_ms(50) - ref.ttft_ms(50):+.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per level (default: max(8, 2 x concurrency))")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, help="n_threads on every side (default: the "
                        "embedded default's)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--slots", type=int, default=0, help="add a raylane side with this "
                        "many slots of threads / slots threads each")
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "default"],
                        default="PASSIVE", help="OMP_WAIT_POLICY of every side (default: "
                        "PASSIVE; see the module docstring)")
    args = parser.parse_args()
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # inherited by every side

    from raylane.cluster.config import default_config
    from raylane.cluster.weights import resolve_weights

    args.threads = args.threads or default_config().models[0].pools[0].options["n_threads"]
    weights = resolve_weights("bundled:smollm2-135m")
    print(f"n_threads {args.threads}, n_threads_batch {os.cpu_count()}, n_ctx {args.n_ctx}, "
          f"n_batch {args.n_batch}, OMP_WAIT_POLICY {args.omp_wait_policy}, "
          f"{os.cpu_count()} cores")
    sides = {SERVER: baseline(weights, args)}
    for name, config in raylane_sides(args).items():
        print(name)
        with running(on_free_port(config)) as url:
            sides[name] = measure(url, config.models[0].name, args, baseline=False)
    count_tokens(weights, [level for levels in sides.values() for level in levels.values()])
    report(sides)
    for concurrency in args.concurrency:
        counts = {name: levels[concurrency].tokens for name, levels in sides.items()}
        if len(set(counts.values())) > 1:
            print(f"note: at concurrency {concurrency} the sides produced different token "
                  f"counts (the same greedy answers were expected): {counts}")


if __name__ == "__main__":
    main()
