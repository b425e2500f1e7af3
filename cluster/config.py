"""The raylane configuration: one YAML file, typed, validated on load.

Every section is a msgspec Struct that rejects unknown keys, so a typo in
`raylane.yaml` fails at start with the key and the line named instead of being
silently ignored. With no file, `default_config()` serves the bundled model.

This module must never import the router or the workers: both read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from raylane.cluster.backends import BACKENDS, validate_options
from raylane.cluster.yamlpos import ConfigError, decode_yaml

Backend = Literal["vllm", "llama.cpp", "sim"]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A config section: unknown keys are errors, every field has a default."""


class RedisConfig(Base, kw_only=True, frozen=True):
    url: str | None = None
    """Redis URL (`redis://host:port/db`). null starts an embedded redis-server."""


class Replicas(Base, kw_only=True, frozen=True):
    min: int = 1
    """Fewest replicas the pool or router runs."""
    max: int = 1
    """Most replicas the pool or router runs."""


class PoolReplicas(Replicas, kw_only=True, frozen=True):
    """A pool's replica bounds and, when `min` < `max`, how it scales on its queue."""

    target_jobs: int | None = None
    """Jobs (queued that the pool could take, plus running) one replica should carry; the
    autoscaler aims at ceil(jobs / target_jobs) replicas. null: the pool's `slots`."""
    upscale_delay_s: float = 5.0
    """How long more replicas must be wanted before they are started."""
    downscale_delay_s: float = 60.0
    """How long fewer replicas must be wanted before replicas are stopped (drained)."""
    idle_s: float = 300.0
    """With `min` 0: how long the pool must have had no work before its last replica
    stops."""


class CorsConfig(Base, kw_only=True, frozen=True):
    allow_origins: list[str] = []
    """Origins browsers may call the API from (`*` for any); empty turns CORS off."""


class RouterConfig(Base, kw_only=True, frozen=True):
    host: str = "127.0.0.1"
    """Address the HTTP API binds (0.0.0.0 to serve other hosts)."""
    port: int = 8000
    """Port of the OpenAI/Ollama HTTP API."""
    ingress: Literal["auto", "direct", "proxy"] = "auto"
    """How HTTP reaches the router. `direct`: the router replica serves `host:port` itself
    (Ray Serve's direct ingress); only on a Ray that `raylane serve` starts, with one router
    replica. `proxy`: Ray Serve's HTTP proxy serves the port and passes each request to a
    router replica. `auto`: `direct` where it can be, `proxy` elsewhere."""
    replicas: Replicas = Replicas()
    """Router replicas (each owns one Redis inbox)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted; larger bodies get 413."""
    cors: CorsConfig = CorsConfig()
    """Cross-origin requests from browsers; off unless origins are listed."""
    queue_position_interval_s: float = 1.0
    """Seconds between the SSE comments (`: queue position 3, estimated wait 2.4 s`) a
    streaming request gets while it waits in the queue; the first comes once it has waited
    that long. 0 sends none."""


class AuthConfig(Base, kw_only=True, frozen=True):
    enabled: bool = False
    """Require an API key (`raylane keys create`) on every route but /health and /metrics."""
    admin_key_env: str = "RAYLANE_ADMIN_KEY"
    """Environment variable holding the admin key of the /admin routes (never the key
    itself in YAML). Unset or empty: the /admin routes do not exist."""
    open_metrics: bool = False
    """Serve /metrics without a key even when keys are required (as vLLM does), for a
    Prometheus that cannot send one; it shows model and pool names and load only."""


class QueueConfig(Base, kw_only=True, frozen=True):
    max_depth: int = 1000
    """Queued jobs past which the router answers 429 before enqueueing."""
    timeout_s: float = 60.0
    """Default deadline of a request (queue wait + generation), in seconds."""
    default_priority: int = 0
    """Priority of a request that names none. Lower is more urgent."""
    lease_s: float = 10.0
    """How long a worker's claim on a job lasts without a heartbeat."""
    max_attempts: int = 3
    """Leases a job may lose before it is dead-lettered."""


class PoolConfig(Base, kw_only=True, frozen=True):
    backend: Backend
    """Engine of this pool: `vllm` (Hugging Face checkpoints, GPU or CPU), `llama.cpp` (GGUF
    on CPU) or `sim` (synthetic, for load tests)."""
    model: str | None = None
    """Weights: a path (a GGUF file for llama.cpp, a checkpoint directory for vLLM), or
    `bundled:smollm2-135m` for the model shipped with raylane. Required for every backend
    but `sim`."""
    name: str | None = None
    """Pool name, unique within its model; defaults to `<backend>-<index>`."""
    options: dict[str, Any] = {}
    """Engine settings (llama.cpp: n_ctx, n_threads, n_batch; sim: tokens_per_s, ...)."""
    slots: int = 1
    """Jobs one replica runs at once; it leases only when a slot is free."""
    resources: dict[str, float] = msgspec.field(default_factory=lambda: {"CPU": 1.0})
    """Ray resources of one replica (CPU, GPU, memory or custom); with `tensor_parallel`
    above 1, of one rank."""
    tensor_parallel: int = 1
    """Ranks (one GPU each) one replica runs its model over. Above 1, each replica reserves
    one placement group of `tensor_parallel` bundles of `resources`, all on one node."""
    replicas: PoolReplicas = PoolReplicas()
    """Replica bounds of this pool, and its autoscaling on queue depth."""
    stream_interval_s: float = 0.0
    """Least time between two pieces of a streamed answer from one job: the text the engine
    made meanwhile goes out together. 0 sends each piece as soon as the last one is out."""
    drain_s: float = 20.0
    """On scale-down or stop, how long running jobs may take to finish before they go
    back to the queue for another replica."""
    priorities: tuple[int | None, int | None] = (None, None)
    """Inclusive priority range the pool takes (null = unbounded on that side)."""
    overflow: bool = False
    """Take only the jobs the router sends this pool because the model's shared queue
    would make them miss their deadline (e.g. a CPU pool beside a GPU pool), never
    from the shared queue itself."""


class ModelConfig(Base, kw_only=True, frozen=True):
    name: str
    """The model's served name (what clients put in `model`)."""
    aliases: list[str] = []
    """Other names clients may use for this model."""
    queue: QueueConfig = QueueConfig()
    """This model's queue: depth bound, default deadline and priority, leases."""
    max_tokens: int | None = None
    """Largest completion a request may ask for, and the most a request that sets no
    max_tokens gets. null: up to the model's remaining context."""
    pools: list[PoolConfig]
    """Worker pools serving this model; all drain its one queue."""


class Config(Base, kw_only=True, frozen=True):
    redis: RedisConfig = RedisConfig()
    router: RouterConfig = RouterConfig()
    auth: AuthConfig = AuthConfig()
    """API keys, their limits and the admin routes."""
    models: list[ModelConfig]
    """Served models; at least one."""

    def model(self, name: str) -> ModelConfig | None:
        """The model served under `name` or one of its aliases."""
        for model in self.models:
            if name == model.name or name in model.aliases:
                return model
        return None


def pool_name(pool: PoolConfig, index: int) -> str:
    """A pool's name: the configured one or `<backend>-<index>`."""
    return pool.name or f"{pool.backend.replace('.', '')}-{index}"


def takers(model: ModelConfig, priority: int) -> list[tuple[PoolConfig, str]]:
    """The pools of `model` whose priority range takes `priority`, with their names."""
    out = []
    for index, pool in enumerate(model.pools):
        low, high = pool.priorities
        if (low is None or priority >= low) and (high is None or priority <= high):
            out.append((pool, pool_name(pool, index)))
    return out


def woken(model: ModelConfig, priority: int, pool: str | None = None) -> list[str]:
    """The pools whose idle workers a job of `priority` should wake: those that take it
    from the model's shared queue, or `pool` alone for a job in that pool's own queue."""
    if pool is not None:
        return [pool]
    return [name for config, name in takers(model, priority) if not config.overflow]


def pool_names(model: ModelConfig) -> list[str]:
    """The names of `model`'s pools, in order."""
    return [pool_name(pool, index) for index, pool in enumerate(model.pools)]


LIGHT_LANE = "~light"
"""The queue of a model's light jobs (tokenizing), which every worker of the model serves
beside its slots, named as a pool's own queue would be; no pool name begins with `~`."""


def deployment_name(model: str, pool: str) -> str:
    """The Ray Serve deployment running a model's pool."""
    return f"worker:{model}:{pool}"


def default_config() -> Config:
    """The embedded default: one llama.cpp pool serving the bundled SmolLM2-135M."""
    threads = max(1, min(4, os.cpu_count() or 1))
    return Config(
        models=[
            ModelConfig(
                name="smollm2-135m",
                aliases=["smollm2"],
                pools=[
                    PoolConfig(
                        backend="llama.cpp",
                        model="bundled:smollm2-135m",
                        options={"n_ctx": 2048, "n_threads": threads},
                        slots=1,
                        resources={"CPU": 1.0},
                    )
                ],
            )
        ]
    )


def parse_config(text: str, source: str = "<config>") -> Config:
    """Decode and validate a YAML config; errors name the key and its line."""
    config = decode_yaml(text, Config, source)
    _check(config, text, source)
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load `path`, or the embedded default when it is None."""
    if path is None:
        return default_config()
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror}") from exc
    return parse_config(text, str(file))


def _check(config: Config, text: str, source: str) -> None:
    """Cross-field rules the types cannot say."""
    fail = _Failer(text, source)
    if not config.models:
        fail("$.models", "at least one model is required")
    _check_router(config.router, fail)
    names: dict[str, str] = {}
    for m, model in enumerate(config.models):
        at = f"$.models[{m}]"
        for i, name in enumerate([model.name, *model.aliases]):
            where = f"{at}.name" if i == 0 else f"{at}.aliases[{i - 1}]"
            if name in names:
                fail(where, f"model name {name!r} is already used by {names[name]!r}")
            names[name] = model.name
        _check_queue(model.queue, f"{at}.queue", fail)
        if model.max_tokens is not None and model.max_tokens < 1:
            fail(f"{at}.max_tokens", "must be at least 1")
        if not model.pools:
            fail(f"{at}.pools", "a model needs at least one pool")
        if model.pools and all(pool.overflow for pool in model.pools):
            fail(f"{at}.pools", "at least one pool must take from the shared queue "
                 "(overflow: false)")
        seen: set[str] = set()
        for p, pool in enumerate(model.pools):
            where = f"{at}.pools[{p}]"
            name = pool_name(pool, p)
            if name in seen:
                fail(f"{where}.name", f"pool name {name!r} is used twice in model {model.name!r}")
            seen.add(name)
            _check_pool(pool, where, fail)


def _check_router(router: RouterConfig, fail: _Failer) -> None:
    fail.replicas(router.replicas, "$.router.replicas", allow_zero=False)
    if router.ingress == "direct" and router.replicas.max > 1:
        fail("$.router.ingress", "direct serves one router replica on the port; with "
             f"replicas.max {router.replicas.max} use proxy (or auto)")
    if router.queue_position_interval_s < 0:
        fail("$.router.queue_position_interval_s", "must be 0 (no comments) or more")


def _check_queue(queue: QueueConfig, at: str, fail: _Failer) -> None:
    if queue.max_depth < 1:
        fail(f"{at}.max_depth", "must be at least 1")
    for key in ("timeout_s", "lease_s"):
        if getattr(queue, key) <= 0:
            fail(f"{at}.{key}", "must be greater than 0")
    if queue.max_attempts < 1:
        fail(f"{at}.max_attempts", "must be at least 1")


def _check_pool_times(pool: PoolConfig, at: str, fail: _Failer) -> None:
    if pool.drain_s < 0:
        fail(f"{at}.drain_s", "must not be negative")
    if not 0 <= pool.stream_interval_s <= 10:
        fail(f"{at}.stream_interval_s", "must lie in [0, 10] seconds")


def _check_pool(pool: PoolConfig, at: str, fail: _Failer) -> None:
    if pool.name is not None and pool.name.startswith("~"):
        fail(f"{at}.name", f"pool names may not begin with '~' ({pool.name!r})")
    if pool.model is None and pool.backend != "sim":
        fail(f"{at}.model", f"required for backend {pool.backend!r}")
    if pool.slots < 1:
        fail(f"{at}.slots", "must be at least 1")
    _check_parallel(pool, at, fail)
    _check_pool_times(pool, at, fail)
    fail.replicas(pool.replicas, f"{at}.replicas", allow_zero=True)
    _check_scaling(pool.replicas, f"{at}.replicas", fail)
    if pool.overflow and pool.replicas.min < 1:
        # The router routes to an overflow pool only while it has a live replica.
        fail(f"{at}.replicas.min", "an overflow pool needs at least 1 (it cannot scale "
             "from zero: requests are routed to it only while a replica is live)")
    for key, amount in pool.resources.items():
        if amount < 0:
            fail(f"{at}.resources.{key}", "must not be negative")
    low, high = pool.priorities
    if low is not None and high is not None and low > high:
        fail(f"{at}.priorities", "the first bound must not exceed the second")
    if pool.backend in BACKENDS:
        problem = validate_options(pool.backend, pool.options)
        if problem is not None:
            path, message = problem
            fail(f"{at}.options{path}", message)


def _check_scaling(replicas: PoolReplicas, at: str, fail: _Failer) -> None:
    if replicas.target_jobs is not None and replicas.target_jobs < 1:
        fail(f"{at}.target_jobs", "must be at least 1 (or null for the pool's slots)")
    for key in ("upscale_delay_s", "downscale_delay_s", "idle_s"):
        if getattr(replicas, key) < 0:
            fail(f"{at}.{key}", "must not be negative")


def target_jobs(pool: PoolConfig) -> int:
    """Jobs one replica of `pool` should carry: `replicas.target_jobs`, or its slots."""
    return pool.replicas.target_jobs or pool.slots


def autoscaled(pool: PoolConfig) -> bool:
    """Whether the pool's replica count follows its queue (min < max), or is fixed."""
    return pool.replicas.min < pool.replicas.max


def _check_parallel(pool: PoolConfig, at: str, fail: _Failer) -> None:
    if pool.tensor_parallel < 1:
        fail(f"{at}.tensor_parallel", "must be at least 1")
    if pool.tensor_parallel > 1 and not any(v > 0 for v in pool.resources.values()):
        # Ray refuses a placement group bundle that reserves nothing.
        fail(f"{at}.resources", "tensor_parallel above 1 needs resources for each rank "
             "(e.g. {GPU: 1})")


class _Failer:
    """Raises ConfigError for a JSON-path-like location in the source text."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def __call__(self, path: str, message: str) -> None:
        raise ConfigError.at(self.text, self.source, path, message)

    def replicas(self, replicas: Replicas, at: str, *, allow_zero: bool) -> None:
        lowest = 0 if allow_zero else 1
        if replicas.min < lowest:
            self(f"{at}.min", f"must be at least {lowest}")
        if replicas.max < max(1, replicas.min):
            self(f"{at}.max", f"must be at least {max(1, replicas.min)} (and at least min)")
