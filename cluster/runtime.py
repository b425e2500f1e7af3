"""Start and stop a raylane cluster from one process: Redis, Ray, Serve, the app.

With no Ray address this starts a local Ray; with no Redis URL it starts an
embedded redis-server. `stop` undoes exactly what `start` did: it deletes the
application from a Ray cluster it joined, and shuts down a Ray and a Redis it
started, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from raylane.cluster.app import APP_NAME, build_application
from raylane.cluster.config import Config, RouterConfig, pool_name
from raylane.cluster.keys import Keys
from raylane.cluster.placement import check_cluster
from raylane.cluster.redis_server import RedisServer, free_ports
from raylane.cluster.weights import resolve_weights
from raylane.cluster.yamlpos import ConfigError

log = logging.getLogger("raylane")


THROUGHPUT_ENV = {
    # A replica runs its code on its own event loop rather than on a second thread's loop:
    # no hop between threads for each request and each streamed chunk. raylane's replicas
    # never block their loop for long (engines generate in threads or processes of their
    # own); vLLM's engine start does, as under vLLM's own server.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # The proxy picks a router replica on its own event loop, not a second one.
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    # The proxy sends each request to the router replica over gRPC, not as a Ray actor call.
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
}
"""Ray Serve's throughput settings (those of `RAY_SERVE_THROUGHPUT_OPTIMIZED` but direct
ingress): through Serve's proxy, 2-3 ms less per request and about a fifth more requests/s
per router replica (docs/benchmarks.md). Read by each Ray process when it starts."""


HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
"""Ports that are fixed unless set: HAProxy's stats and Prometheus ports (8404, 9101) and
those of Serve's own proxy (8500, 9500), which HAProxy falls back to while no router
replica is up. Free ones let two raylanes run on one host without one's HAProxy failing
to start or falling back to the other's routers."""


def serve_env(direct_port: int | None = None) -> dict[str, str]:
    """Settings for a Ray that `raylane serve` starts itself, less those the caller's
    environment sets: Serve's throughput settings; with `direct_port`, Serve's direct
    ingress on that port (`direct_ingress`); and what Serve's HAProxy ingress needs when the
    caller turns it on (`RAY_SERVE_ENABLE_HA_PROXY=1`). A cluster from `ray start` takes
    them from that command's environment (deploy/*.yaml)."""
    env = dict(THROUGHPUT_ENV)
    if direct_port is not None:
        env.update({
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            # Serve gives each ingress replica a port of [min, max): here only the router's.
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_port + 1),
            # Serve holds a released port back (150 s) and a stopping replica open (30 s)
            # for load balancers in front to notice; there are none, and a router replica
            # that Serve restarts should take the port back at once.
            "RAY_SERVE_PORT_QUARANTINE_S": "0",
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        })
    elif os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        env.update({
            # How long a stopping router replica keeps answering so HAProxy can take it out
            # of rotation (Serve's default is 30 s, sized for load balancers on other hosts);
            # its requests in flight finish either way. The HAProxy here is on this host.
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
            # The fixed ports, free ones instead.
            **dict(zip(HAPROXY_PORTS, map(str, free_ports(len(HAPROXY_PORTS))), strict=True)),
        })
    return {name: value for name, value in env.items() if name not in os.environ}


def direct_ingress(router: RouterConfig, own_ray: bool) -> bool:
    """Whether the router replica serves `router.port` itself (`router.ingress`): `auto`
    chooses it on a Ray this process starts, with one router replica and no HAProxy.
    Raises ConfigError for `direct` where it cannot be."""
    haproxy = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
    if router.ingress == "direct":
        if not own_ray:
            raise ConfigError("router.ingress: direct needs a Ray that raylane starts itself; "
                              "a running Ray's ingress was set when it started (use auto)")
        if haproxy:
            raise ConfigError("router.ingress: direct and RAY_SERVE_ENABLE_HA_PROXY=1 both "
                              "serve the router's port; choose one")
        return True
    return router.ingress == "auto" and own_ray and not haproxy and router.replicas.max == 1


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigError when something on this host already listens on `host:port`."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"router.port: cannot serve {host}:{port}: {exc.strerror}"
                              ) from exc


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """`extra` in os.environ for the duration (processes started then inherit it)."""
    os.environ.update(extra)
    try:
        yield
    finally:
        for name in extra:
            os.environ.pop(name, None)


@dataclass
class Cluster:
    config: Config
    redis_url: str | None = None
    ray_address: str | None = None
    prefix: str = "raylane"
    _redis: RedisServer | None = field(default=None, repr=False)
    _own_ray: bool = False
    _direct: bool = False

    def start(self) -> float:
        """Bring everything up; returns seconds taken. Raises on any failure."""
        began = time.monotonic()
        for model in self.config.models:
            for pool in model.pools:
                if pool.model is not None:
                    resolve_weights(pool.model)  # fail before starting anything
        # No address: a Ray of its own, even where `ray start` left one running (plain
        # `ray.init()` would join that one, and stopping would then shut its Serve down).
        address = self.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        self._own_ray = address == "local"
        self._direct = direct_ingress(self.config.router, self._own_ray)
        if self._own_ray:
            check_port_free(self.config.router.host, self.config.router.port)
        try:
            self._start_redis()
            self._start_ray(address)
            self._start_serve()
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def _start_redis(self) -> None:
        url = self.redis_url or os.environ.get("REDIS_URL") or self.config.redis.url
        if url is None:
            self._redis = RedisServer().start()
            url = self._redis.url
        self.redis_url = url

    def _start_ray(self, address: str) -> None:
        import ray

        env = serve_env(self.config.router.port if self._direct else None)
        with environment(env if self._own_ray else {}):  # Ray's processes inherit it
            ray.init(address=address, namespace="raylane", include_dashboard=False,
                     configure_logging=True, logging_level=logging.WARNING)
        check_cluster(self.config)  # Serve would wait forever for a replica that cannot fit

    def _start_serve(self) -> None:
        from ray import serve

        router = self.config.router
        # Under direct ingress Serve still runs its proxy (on the head node only), which
        # would take the router's port: it gets a free one of its own.
        port = free_ports(1)[0] if self._direct else router.port
        serve.start(http_options={"host": router.host, "port": port})
        assert self.redis_url is not None
        self._set_draining(False)  # a previous stop may have left the flag behind
        app = build_application(self.config, self.redis_url, self.prefix)
        serve.run(app, name=APP_NAME, route_prefix="/")
        self._wait_until_answering()

    def _wait_until_answering(self, timeout_s: float = 60.0) -> None:
        """Return once the router answers on its port (behind HAProxy, a replica that Serve
        reports ready takes a moment more to be added to HAProxy's backends)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5):
                    return
            except (OSError, http.client.HTTPException) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the router does not answer at {self.url}: {exc}"
                                       ) from exc
            time.sleep(0.1)

    @property
    def url(self) -> str:
        router = self.config.router
        host = "127.0.0.1" if router.host in ("0.0.0.0", "::") else router.host
        return f"http://{host}:{router.port}"

    def drain(self) -> None:
        """Refuse new requests and wait (up to the pools' drain time) for queued and running
        jobs to finish, so stopping does not cut answers short."""
        if self.redis_url is None:
            return
        import redis

        keys = Keys(self.prefix)
        grace = max((p.drain_s for m in self.config.models for p in m.pools), default=0.0)
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            self._set_draining(True, ttl_s=grace + 60)
            time.sleep(1.0)  # routers see the flag within their housekeeping period
            deadline = time.monotonic() + grace
            busy = [keys.queue(m.name) for m in self.config.models]
            busy += [keys.leases(m.name) for m in self.config.models]
            busy += [keys.queue(m.name, pool_name(p, i)) for m in self.config.models
                     for i, p in enumerate(m.pools) if p.overflow]
            while time.monotonic() < deadline and any(client.zcard(key) for key in busy):
                time.sleep(0.2)
            time.sleep(0.5)  # the last answers leave the routers
        except redis.RedisError as exc:
            log.warning("could not drain before stopping: %s", exc)
        finally:
            client.close()

    def _set_draining(self, on: bool, ttl_s: float = 0) -> None:
        import redis

        assert self.redis_url is not None
        key = Keys(self.prefix).draining()
        with redis.Redis.from_url(self.redis_url, socket_timeout=2,
                                  socket_connect_timeout=2) as client:
            if on:
                client.set(key, "1", ex=max(1, int(ttl_s)))
            else:
                client.delete(key)

    def stop(self) -> None:
        import ray
        from ray import serve

        if ray.is_initialized():
            self.drain()
            try:
                if self._own_ray:
                    serve.shutdown()
                else:
                    serve.delete(APP_NAME)
            except Exception as exc:  # keep tearing down whatever else is up
                log.warning("stopping Serve failed: %s", exc)
            ray.shutdown()
            if self._redis is None and self.redis_url is not None:
                with contextlib.suppress(Exception):
                    self._set_draining(False)  # an external Redis outlives this raylane
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
