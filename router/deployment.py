"""The router as a Ray Serve ingress deployment: one RouterState per replica."""

from __future__ import annotations

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
        self.state = await RouterState.open(config, redis_url, prefix)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Serve's proxy returns the X-Request-ID it passed on (the caller's, or its own)
        return build_app(self.state, echo_request_id=False)

    async def check_health(self) -> None:
        if not (self.state.inbox.alive and self.state.keeper.alive):
            raise ServiceUnavailable("the inbox reader or the housekeeping has stopped")

    async def __del__(self) -> None:
        await self.state.close()
