"""The router's ASGI app factory: routes, error handlers, state on `app.state`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from raylane.router import auth, errors, openapi
from raylane.router.admin_routes import admin_api
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
    if auth.admin_key(state.config) is not None:
        app.include_router(admin_api)
    openapi.install(app)
    app.add_middleware(auth.AuthMiddleware, store=state.key_store, config=state.config)
    origins = state.config.router.cors.allow_origins
    if origins:
        # added last, so it runs first: preflights are answered before auth
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"])
    return app


def _version() -> str:
    try:
        return version("raylane")
    except PackageNotFoundError:
        return "0+unknown"
