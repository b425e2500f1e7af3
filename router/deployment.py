"""The router as a Ray Serve ingress deployment: one RouterState per replica."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from raylane.cluster import logs
from raylane.cluster.config import Config
from raylane.cluster.errors import ServiceUnavailable
from raylane.router.app import build_app
from raylane.router.state import RouterState


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
@serve.ingress()
class Router:
    """HTTP face of raylane; requests wait here while workers pull their jobs."""

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self, config: Config, redis_url: str, prefix: str, *pools: object
    ) -> None:
        # `pools` are the worker deployments, bound here so Serve deploys them with the
        # router; requests never go to them directly (workers pull from Redis).
        logs.configure()
        _reuse_the_port()
        self.state = await RouterState.open(config, redis_url, prefix)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Serve's proxy returns the X-Request-ID it passed on (the caller's, or its own)
        return build_app(self.state, echo_request_id=False)

    async def check_health(self) -> None:
        if not (self.state.inbox.alive and self.state.keeper.alive):
            raise ServiceUnavailable("the inbox reader or the housekeeping has stopped")

    async def __del__(self) -> None:
        await self.state.close()


def _reuse_the_port() -> None:
    """Under Serve's direct ingress, let this replica's HTTP server bind its port the way
    Serve's proxy binds its own: with SO_REUSEADDR and SO_REUSEPORT.

    Serve (2.60) binds an ingress replica's port with neither. When a router replica dies
    with connections open, their ends wait in TIME_WAIT on its port for a minute; the
    replica Serve starts in its place then fails to bind the port, and Serve's controller
    blocks the port for good. Under `raylane serve` the port is the router's one port
    (docs/architecture.md, Ingress), so the router would not come back. Runs in the
    replica's constructor, before Serve starts the server."""
    from ray.serve._private import constants, replica

    if not constants.RAY_SERVE_ENABLE_DIRECT_INGRESS:
        return
    start = getattr(replica, "start_asgi_http_server", None)
    if start is None:
        logging.getLogger("raylane.router").warning(
            "this Ray Serve does not start ingress servers where raylane expects; a router "
            "replica Serve restarts may not get its port back")
        return
    if getattr(start, "raylane_reuses_port", False):
        return

    async def reusing(*args: Any, **kwargs: Any) -> Any:
        return await start(*args, **{**kwargs, "enable_so_reuseport": True})

    reusing.raylane_reuses_port = True  # type: ignore[attr-defined]
    replica.start_asgi_http_server = reusing
