"""Build the engine a pool's config names."""

from __future__ import annotations

from raylane.cluster.backends import options_for
from raylane.cluster.config import PoolConfig
from raylane.cluster.weights import resolve_weights
from raylane.workers.engine import Engine


def build_engine(pool: PoolConfig) -> Engine:
    options = options_for(pool.backend, pool.options)
    if pool.backend == "sim":
        from raylane.workers.sim import SimEngine

        return SimEngine(options)
    if pool.backend == "vllm":
        from raylane.workers.vllm_engine import VllmEngine

        assert pool.model is not None  # the config requires it for vllm
        return VllmEngine(resolve_weights(pool.model), options, pool.slots, pool.tensor_parallel)
    if pool.backend == "llama.cpp":
        from raylane.workers.llamacpp import LlamaCppEngine

        assert pool.model is not None  # the config requires it for llama.cpp
        return LlamaCppEngine(resolve_weights(pool.model), options, pool.slots)
    raise ValueError(f"unknown backend {pool.backend!r}")
