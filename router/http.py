"""What every API's routes share at the HTTP edge: the body limit and the stream headers."""

from __future__ import annotations

from fastapi import Request

from raylane.cluster.errors import PayloadTooLarge
from raylane.router.state import RouterState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of an event stream: no caching, and no buffering by a proxy in front (nginx)."""


async def read_body(request: Request, state: RouterState) -> bytes:
    """The request's body, or PayloadTooLarge (413) past `router.max_body_bytes`, checked
    against the declared length before anything is read."""
    limit = state.config.router.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    return body
