"""The Ollama API's model answers: `/api/tags`, `/api/ps`, `/api/show`, `/api/version`, and
the shapes of `/api/embed` and `/api/embeddings`.

raylane's models come from the cluster config, not from a local store, so what
Ollama reads from a model file is filled only where raylane knows it (the weights'
format, size and quantization from the file name); the rest is an empty string.
Nothing here picks an HTTP status.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from raylane.cluster.messages import Embeddings
from raylane.cluster.registry import live_workers
from raylane.cluster.weights import resolve_weights
from raylane.cluster.yamlpos import ConfigError
from raylane.router.auth import check_model, visible_models
from raylane.router.embeddings import embedding_response
from raylane.router.state import RouterState

NEVER = "2318-01-01T00:00:00Z"
"""`expires_at` of a running model: pools keep their models loaded while they run."""
QUANTIZATION = re.compile(r"(?i)\b(i?q\d_[a-z0-9_]*\d[a-z]?|q\d_[a-z]|bf16|f16|f32)\b")
MANAGED = ("Models come from the raylane cluster config: add or change them under `models:` "
           "in raylane.yaml and restart (or redeploy) the cluster. {action} is not supported.")


def not_managed(action: str) -> InvalidRequest:
    """The answer to `/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete`."""
    return InvalidRequest(MANAGED.format(action=action))


def tags(state: RouterState) -> dict[str, Any]:
    """Every served model and alias the key may use, as Ollama lists local models."""
    return {"models": [_entry(state, model, name) for model in visible_models(state.config)
                       for name in (model.name, *model.aliases)]}


async def ps(state: RouterState) -> dict[str, Any]:
    """The models the key may use that have live workers now, and their aliases."""
    running = []
    for model in visible_models(state.config):
        try:
            live = await live_workers(state.redis, state.keys, model.name)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
        if not live:
            continue
        for name in (model.name, *model.aliases):
            entry = _entry(state, model, name)
            del entry["modified_at"]
            entry.update(expires_at=NEVER, size_vram=0, context_length=_context(model))
            running.append(entry)
    return {"models": running}


def show(state: RouterState, name: str) -> dict[str, Any]:
    """What raylane knows about one served model or alias."""
    model = state.config.model(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
    check_model([model.name, *model.aliases], name)
    pools = ", ".join(f"{p.backend} ({p.model or 'no weights'})" for p in model.pools)
    modelfile = (f"# {name} is served by raylane from its cluster config; pools: {pools}.\n"
                 "# The chat template is the one in the model's weights.\n")
    info: dict[str, Any] = {"raylane.model": model.name,
                            "raylane.aliases": list(model.aliases),
                            "raylane.backends": [p.backend for p in model.pools]}
    context = _context(model)
    if context:
        info["raylane.context_length"] = context
    return {"modelfile": modelfile, "parameters": "", "template": "",
            "details": _details(model, name), "model_info": info,
            "capabilities": ["completion"],
            "modified_at": _time(state.started)}


def embed_response(result: Embeddings, name: str, duration_ns: int) -> dict[str, Any]:
    """The `/api/embed` answer: one vector per input, in input order."""
    data = embedding_response(result, name, "float")["data"]
    return {"model": name, "embeddings": [d["embedding"] for d in data],
            "total_duration": duration_ns, "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens}


def embedding_response_legacy(result: Embeddings) -> dict[str, Any]:
    """The legacy `/api/embeddings` answer: the vector of its one prompt."""
    return {"embedding": embedding_response(result, "", "float")["data"][0]["embedding"]}


def _entry(state: RouterState, model: ModelConfig, name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": _time(state.started),
            "size": _size(model), "digest": "", "details": _details(model, name)}


def _details(model: ModelConfig, name: str) -> dict[str, Any]:
    weights = _weights(model)
    gguf = weights.endswith(".gguf")
    quantization = QUANTIZATION.search(weights.rsplit("/", 1)[-1]) if gguf else None
    fmt = "gguf" if gguf else ("safetensors" if weights else "")
    return {"parent_model": "" if name == model.name else model.name, "format": fmt,
            "family": "", "families": None, "parameter_size": "",
            "quantization_level": quantization.group(1).upper() if quantization else ""}


def _weights(model: ModelConfig) -> str:
    """The first pool's weights as a path, or "" where raylane cannot tell."""
    for pool in model.pools:
        if pool.model:
            try:
                return str(resolve_weights(pool.model))
            except ConfigError:
                return pool.model
    return ""


def _size(model: ModelConfig) -> int:
    for pool in model.pools:
        if pool.model:
            try:
                path = resolve_weights(pool.model)
            except ConfigError:
                return 0
            return path.stat().st_size if path.is_file() else 0
    return 0


def _context(model: ModelConfig) -> int:
    for pool in model.pools:
        for key in ("n_ctx", "max_model_len"):
            value = pool.options.get(key)
            if isinstance(value, int):
                return value
    return 0


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
