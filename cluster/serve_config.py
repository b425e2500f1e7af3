"""raylane as a Ray Serve config: the application builder and the config that names it.

`serve deploy`, `raylane deploy` and KubeRay's `RayService` all describe an application by
an `import_path` to a builder plus `args`. `app_from_args` is that builder; `serve_config`
writes the Serve config (YAML-ready mapping) for a raylane config, with the raylane config
inline so the cluster needs no copy of the file.

A deployed application runs on many nodes, so it needs a Redis that every node reaches:
the embedded Redis of `raylane serve` (`redis.url: null`) has no place here, and
`serve_config` refuses a config without a Redis URL instead of starting anything.

This module must never import the router or the workers at module level (the builder
imports them when Serve calls it, on the cluster).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raylane.cluster.app import APP_NAME, build_application
from raylane.cluster.config import Config, load_config, parse_config
from raylane.cluster.keys import Keys
from raylane.cluster.yamlpos import ConfigError

if TYPE_CHECKING:
    from ray.serve import Application

IMPORT_PATH = "raylane.cluster.serve_config:app_from_args"
PREFIX = "raylane"
NO_REDIS = (
    "a deployed application needs a Redis every node reaches: set redis.url in the config, "
    "REDIS_URL, or --redis-url (redis.url: null starts an embedded Redis for `raylane serve` "
    "on one machine only)"
)


def app_from_args(args: dict[str, Any]) -> Application:
    """Serve's application builder: `args` holds `config` (a mapping, or a path on the
    cluster's nodes), `redis_url`, and `check_placement` (default true)."""
    config = config_from_arg(args.get("config"))
    redis_url = args.get("redis_url") or os.environ.get("REDIS_URL") or config.redis.url
    if not redis_url:
        raise ConfigError(NO_REDIS)
    if args.get("check_placement", True):
        _check_cluster(config)
    _clear_draining(redis_url, PREFIX)
    return build_application(config, redis_url, PREFIX)


def config_from_arg(value: object) -> Config:
    """The raylane config of a builder's `config` argument (inline mapping or path)."""
    if isinstance(value, dict):
        return parse_config(yaml.safe_dump(value, sort_keys=False), "<serve args: config>")
    if isinstance(value, str):
        return load_config(value)
    raise ConfigError("serve args: `config` must be a raylane config mapping or a path to one")


def serve_config(path: str | os.PathLike[str], redis_url: str | None = None,
                 check_placement: bool = True) -> dict[str, Any]:
    """The Serve config (the schema of `serve deploy` and `serveConfigV2`) deploying the
    raylane config at `path`. Raises ConfigError when it has no Redis URL.

    With `check_placement` the application refuses to start (DEPLOY_FAILED, naming the pool)
    when a pool fits no node the cluster has or its autoscaler may add. Turn it off where
    the deploy comes before the nodes: a head deploying as it starts, while its workers
    are still joining and the cluster cannot say what its autoscaler will add."""
    config = load_config(path)  # validates, errors name the key and line
    url = redis_url or os.environ.get("REDIS_URL") or config.redis.url
    if not url:
        raise ConfigError(f"{path}: {NO_REDIS}")
    text = Path(path).read_text()
    if config.router.ingress == "direct":
        raise ConfigError.at(text, str(path), "$.router.ingress",
                             "direct is for `raylane serve`; on a cluster Serve's proxy on "
                             "every node serves the port (use auto or proxy)")
    inline = yaml.safe_load(text) or {}
    router = config.router
    args: dict[str, Any] = {"config": inline, "redis_url": url}
    if not check_placement:
        args["check_placement"] = False
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": router.host, "port": router.port},
        "applications": [{
            "name": APP_NAME,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "args": args,
        }],
    }


def dump(config: dict[str, Any]) -> str:
    """A Serve config as YAML, keys in the order written."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _check_cluster(config: Config) -> None:
    """Refuse a config the cluster can never place (Serve would wait forever)."""
    import ray

    from raylane.cluster.placement import check_cluster

    if ray.is_initialized():
        check_cluster(config)


def _clear_draining(redis_url: str, prefix: str) -> None:
    """A `raylane serve` stopped on this Redis may have left its drain flag behind."""
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
        client.delete(Keys(prefix).draining())
