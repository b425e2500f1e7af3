"""The router's ASGI app factory: routes, error handlers, state on `app.state`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from raylane.router import auth, errors, openapi, request_ids
from raylane.router.admin_routes import admin_api
from raylane.router.anthropic_routes import anthropic_api
from raylane.router.metrics import metrics_api
from raylane.router.ollama_routes import ollama_api
from raylane.router.responses_routes import responses_api
from raylane.router.routes import api
from raylane.router.state import RouterState
from raylane.router.timeline import QUEUE_WAIT_HEADER

EXPOSED_HEADERS = ["X-Request-ID", QUEUE_WAIT_HEADER, "Retry-After"]
"""Response headers a browser's script may read on a cross-origin answer."""


def build_app(state: RouterState, echo_request_id: bool = True) -> FastAPI:
    """A FastAPI app serving the OpenAI API from `state`; without `echo_request_id` when a
    proxy in front (Ray Serve's) returns the `X-Request-ID` header itself."""
    app = FastAPI(title="raylane", version=_version(), docs_url=None, redoc_url=None)
    app.state.raylane = state
    errors.install(app)
    app.include_router(api)
    app.include_router(anthropic_api)
    app.include_router(responses_api)
    app.include_router(ollama_api)
    app.include_router(metrics_api)
    admin = auth.admin_key(state.config) is not None
    if admin:
        app.include_router(admin_api)
    openapi.install(app, keys=state.config.auth.enabled, admin=admin)
    app.add_middleware(auth.AuthMiddleware, store=state.key_store, config=state.config)
    origins = state.config.router.cors.allow_origins
    if origins:
        # added last, so it runs first: preflights are answered before auth
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=EXPOSED_HEADERS)
    # outermost: every answer, refusals by auth and CORS included, carries the id
    app.add_middleware(request_ids.RequestIdMiddleware, echo=echo_request_id)
    return app


def _version() -> str:
    try:
        return version("raylane")
    except PackageNotFoundError:
        return "0+unknown"
