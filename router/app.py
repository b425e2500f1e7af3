"""The router's ASGI app factory: routes, error handlers, state on `app.state`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from raylane.router import errors, openapi
from raylane.router.anthropic_routes import anthropic_api
from raylane.router.ollama_routes import ollama_api
from raylane.router.routes import api
from raylane.router.state import RouterState


def build_app(state: RouterState) -> FastAPI:
    """A FastAPI app serving the OpenAI API from `state`."""
    app = FastAPI(title="raylane", version=_version(), docs_url=None, redoc_url=None)
    app.state.raylane = state
    errors.install(app)
    app.include_router(api)
    app.include_router(anthropic_api)
    app.include_router(ollama_api)
    openapi.install(app)
    return app


def _version() -> str:
    try:
        return version("raylane")
    except PackageNotFoundError:
        return "0+unknown"
