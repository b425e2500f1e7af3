"""Admission: which model a request is for, how urgent it is, and until when it matters."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from raylane.cluster.config import Config, ModelConfig
from raylane.cluster.errors import InvalidRequest, ModelNotFound
from raylane.router import request_ids
from raylane.router.auth import check_model, current_key, key_priority

PRIORITY_HEADER = "x-priority"
TIMEOUT_HEADER = "x-request-timeout"
MAX_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True)
class Ticket:
    """What admission decided about one request."""

    model: ModelConfig
    priority: int
    created: float
    deadline: float
    request_id: str
    """The caller's `X-Request-ID`, or a new id (`request_ids`): on every job, in every log."""
    tenant: str = ""
    """Whom the fair-share scheduler counts the request against (see `tenant`)."""
    response_id: str = ""
    """The id of the answer's body: `<kind prefix>-<request_id>` (e.g. `chatcmpl-…`)."""


def admit(
    config: Config, model: str, priority: int | None, headers: Mapping[str, str], kind: str,
    user: str | None = None,
) -> Ticket:
    """Resolve the model and the request's priority, deadline and tenant, or raise."""
    served = config.model(model)
    if served is None:
        raise ModelNotFound(f"The model '{model}' does not exist.", param="model")
    check_model([served.name, *served.aliases], model)
    if priority is None:
        priority = _header_int(headers, PRIORITY_HEADER)
    priority = key_priority(priority, served.queue.default_priority)
    timeout = _header_timeout(headers) or served.queue.timeout_s
    now = time.time()
    prefix = {"chat": "chatcmpl", "embedding": "embd", "message": "msg",
              "response": "resp"}.get(kind, "cmpl")
    request_id = request_ids.current()
    return Ticket(served, priority, now, now + timeout, request_id, tenant(user),
                  f"{prefix}-{request_id}")


def tenant(user: str | None) -> str:
    """The fair-share tenant of a request: its API key's name when keys are on (a key cannot
    win a larger share by varying `user`), else the caller's `user`; long `user` values
    are hashed to bound the scheduler's state."""
    key = current_key.get()
    if key is not None:
        return f"key:{key.name}"
    if not user:
        return ""
    if len(user) > 64:
        user = hashlib.sha256(user.encode()).hexdigest()
    return f"user:{user}"


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidRequest(f"Header {name} must be an integer, got {raw!r}.",
                             param=name) from None
    if abs(value) > 1_000_000:
        raise InvalidRequest(f"Header {name} must lie in [-1000000, 1000000].", param=name)
    return value


def _header_timeout(headers: Mapping[str, str]) -> float | None:
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_TIMEOUT_S):
        raise InvalidRequest(
            f"Header {TIMEOUT_HEADER} must be a number of seconds in (0, {MAX_TIMEOUT_S:.0f}], "
            f"got {raw!r}.",
            param=TIMEOUT_HEADER,
        )
    return value
