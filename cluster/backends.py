"""Engine settings per backend: the `pools[].options` a config may give.

These Structs are part of the contract between the config and the workers, so
they live here; each engine reads its own with `options_for`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from raylane.cluster.yamlpos import split_error


class LlamaCppOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    n_ctx: int = 2048
    """Context length in tokens (prompt + completion) of each slot."""
    n_threads: int | None = None
    """CPU threads per generation; null lets llama.cpp choose."""
    n_batch: int = 512
    """Prompt tokens evaluated per batch."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU when llama.cpp was built with one."""
    chat_template: str | None = None
    """A Jinja chat template overriding the one in the GGUF file."""
    embedding_pooling: Literal["mean", "cls", "last"] = "mean"
    """How token states become one embedding vector, for models whose GGUF declares no
    pooling of its own (embedding models declare theirs, and it wins)."""


class SimOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    tokens_per_s: float = 50.0
    """Tokens each slot emits per second."""
    ttft_s: float = 0.0
    """Extra delay before the first token (a stand-in for prompt processing)."""
    n_ctx: int = 4096
    """Context length the simulated model claims."""
    default_tokens: int = 16
    """Tokens produced when a request sets no max_tokens."""
    embedding_dim: int = 64
    """Length of the vectors it answers embedding requests with."""
    fail_on: str | None = None
    """Fault injection: a prompt containing this text kills the worker process, as a
    crashing engine would (for fault drills and tests of dead-lettering)."""


class VllmOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    max_model_len: int | None = None
    """Context length (prompt + completion); null: the model's own."""
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    """Weights and activations; auto: the checkpoint's own."""
    quantization: str | None = None
    """Quantization method of the checkpoint (awq, gptq, fp8, ...); null: from its config."""
    gpu_memory_utilization: float = 0.9
    """Share of each GPU's memory vLLM may take (weights, activations, KV cache)."""
    kv_cache_gb: float | None = None
    """On CPU: GiB of KV cache (vLLM's VLLM_CPU_KVCACHE_SPACE)."""
    enforce_eager: bool = False
    """Skip CUDA graphs and compilation: faster start, slower decoding."""
    max_num_seqs: int | None = None
    """Sequences vLLM batches at once; null: the pool's `slots`."""
    runner: Literal["generate", "pooling"] = "generate"
    """`pooling` serves `/v1/embeddings` only (an embedding model, or `convert: embed`)."""
    convert: Literal["embed"] | None = None
    """Serve a generative checkpoint as an embedding model (with `runner: pooling`)."""
    trust_remote_code: bool = False
    """Let the checkpoint's own Python code run (some architectures need it)."""
    distributed_executor_backend: Literal["ray", "mp"] | None = None
    """How ranks run with `tensor_parallel` above 1; null: `ray` (in the replica's
    placement group), `mp` for processes on the replica's own node."""
    chat_template: str | None = None
    """A Jinja chat template replacing the checkpoint's own."""
    engine_args: dict[str, Any] = {}
    """Any other vLLM engine argument, passed as given (e.g. enable_prefix_caching)."""


BACKENDS: dict[str, type[msgspec.Struct]] = {
    "llama.cpp": LlamaCppOptions,
    "vllm": VllmOptions,
    "sim": SimOptions,
}


def options_for(backend: str, options: dict[str, Any]) -> Any:
    """The typed options of `backend` (raises msgspec.ValidationError)."""
    return msgspec.convert(options, BACKENDS[backend])


def validate_options(backend: str, options: dict[str, Any]) -> tuple[str, str] | None:
    """None when `options` suit `backend`, else (path below options, problem)."""
    try:
        options_for(backend, options)
    except msgspec.ValidationError as exc:
        message, path, key = split_error(exc)
        path = path.removeprefix("$")
        if message.startswith("Object contains unknown field"):
            return f"{path}.{key}", f"unknown option for backend {backend!r}"
        return path, message
    return None
