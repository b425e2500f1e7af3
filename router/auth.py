"""Who is calling: API keys on every route but /health, the admin key on /admin.

One ASGI middleware checks every HTTP request before any route sees it:
- `/health` is open to all (load balancers reach it without a key), and so is `/metrics`
  with `auth.open_metrics` (as vLLM's is, for a Prometheus that cannot send a key);
- `/admin/*` needs `Authorization: Bearer <admin key>` (401 without a key, 403 with
  another); with no admin key set the admin routes are not mounted at all;
- with `auth.enabled`, every other route needs a key (`Authorization: Bearer` from
  OpenAI and Ollama clients, `x-api-key` from Anthropic clients); 401 otherwise, in the
  route family's error shape.

The key found is put in `current_key` for admission and the job runner. Keys and
request bodies are never logged here.
"""

from __future__ import annotations

import hmac
import os
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from raylane.cluster.apikeys import ApiKey, KeyStore
from raylane.cluster.config import Config, ModelConfig
from raylane.cluster.errors import AuthenticationError, ModelNotFound, PermissionDenied
from raylane.router.errors import error_response

current_key: ContextVar[ApiKey | None] = ContextVar("raylane_api_key", default=None)
"""The API key of the request being handled (None when auth is off)."""

OPEN_PATHS = ("/health",)
ADMIN_PREFIX = "/admin/"


def admin_key(config: Config) -> str | None:
    """The admin key from the environment, or None when there is none."""
    return os.environ.get(config.auth.admin_key_env) or None


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a client sent: a bearer token, else Anthropic's `x-api-key`."""
    bearer = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = bearer.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None


class AuthMiddleware:
    """Refuse requests without the right key before they reach a route."""

    def __init__(self, app: ASGIApp, store: KeyStore, config: Config) -> None:
        self.app = app
        self.store = store
        self.enabled = config.auth.enabled
        self.admin = admin_key(config)
        self.open = OPEN_PATHS + (("/metrics",) if config.auth.open_metrics else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        secret = presented_key(dict(scope.get("headers", [])))
        try:
            key = await self._check(path, secret)
        except (AuthenticationError, PermissionDenied, ModelNotFound) as exc:
            await error_response(exc, path)(scope, receive, send)
            return
        token = current_key.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            current_key.reset(token)

    async def _check(self, path: str, secret: str | None) -> ApiKey | None:
        if self.admin is not None and path.startswith(ADMIN_PREFIX):
            _check_admin(self.admin, secret)
            return None
        if not self.enabled:
            return None
        if secret is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
                "(or 'x-api-key: <key>').")
        key = await self.store.lookup(secret)
        if key is None:
            raise AuthenticationError("Incorrect API key provided.")
        return key


def _check_admin(admin: str, secret: str | None) -> None:
    if secret is None:
        raise AuthenticationError("The admin routes need the admin key.")
    if not hmac.compare_digest(secret.encode(), admin.encode()):
        raise PermissionDenied("The admin routes need the admin key.")


def check_model(names: list[str], asked: str) -> None:
    """Refuse a model the current key may not use, as OpenAI does: 404 model_not_found."""
    key = current_key.get()
    if key is not None and not key.allows(names):
        raise ModelNotFound(
            f"The model '{asked}' does not exist or you do not have access to it.",
            param="model")


def visible_models(config: Config) -> list[ModelConfig]:
    """The served models the current key may use (all of them when auth is off): what the
    model lists of every API show it, as OpenAI lists only a key's models."""
    key = current_key.get()
    return [m for m in config.models if key is None or key.allows([m.name, *m.aliases])]


def key_priority(priority: int | None, default: int) -> int:
    """A request's priority under the current key: the key's default when the request
    names none (else `default`), clamped to the key's most urgent allowed priority."""
    key = current_key.get()
    if key is None:
        return default if priority is None else priority
    if priority is None:
        priority = default if key.default_priority is None else key.default_priority
    if key.max_priority is not None:
        priority = max(priority, key.max_priority)
    return priority
