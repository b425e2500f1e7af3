"""Request ids: the caller's `X-Request-ID` (or a new one), for answers and logs alike.

An id the caller sends is kept when it is 1 to 128 characters of letters, digits and
`-_.:+=@/~`; otherwise (absent, too long, other characters) the router makes a new one
(32 hex digits). Admission reads it from `current` and puts it on every job of the
request, so router and worker log lines carry the same id, and the response ids embed it
(`chatcmpl-<id>`, `msg_<id>`).

Behind Ray Serve's proxy, the proxy adds an `X-Request-ID` header to every answer itself
(the id it received, or one it made up and passed on), so the app must not add a second
one there (`echo=False`).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
VALID = re.compile(r"[A-Za-z0-9._:+=@/~-]{1,128}")

log = logging.getLogger("raylane.router")

_current: ContextVar[str] = ContextVar("raylane_request_id", default="")
_SCOPE_KEY = "raylane.request_id"
"""Where the middleware leaves the id (and whether it echoes it) in the ASGI scope, for the
handler of unexpected errors, which Starlette runs outside of every middleware."""


def current() -> str:
    """The id of the request being handled (a new one outside of a request)."""
    return _current.get() or new_id()


def new_id() -> str:
    return uuid.uuid4().hex


def of(scope: Scope) -> str | None:
    """The id the middleware gave the request of `scope`."""
    found = scope.get(_SCOPE_KEY)
    return found[0] if found else None


def echo_headers(scope: Scope) -> dict[str, str]:
    """The `X-Request-ID` header an answer to `scope`'s request must carry, if any."""
    found = scope.get(_SCOPE_KEY)
    return {HEADER: found[0]} if found and found[1] else {}


class RequestIdMiddleware:
    """Take (or make) each HTTP request's id and, with `echo`, return it as `X-Request-ID`."""

    def __init__(self, app: ASGIApp, echo: bool = True) -> None:
        self.app = app
        self.echo = echo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = MutableHeaders(scope=scope).get(HEADER)
        request_id = asked if asked is not None and VALID.fullmatch(asked) else new_id()
        if asked is not None and asked != request_id:
            log.info("replaced an invalid X-Request-ID", extra={
                "request_id": request_id, "invalid_length": len(asked)})
        token = _current.set(request_id)
        scope[_SCOPE_KEY] = (request_id, self.echo)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start" and self.echo:
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
