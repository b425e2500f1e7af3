"""raylane's logs: the stdlib loggers `raylane.*`, written as one JSON object per line.

A log call about a request passes its fields as `extra` (`request_id` first of all: the
caller's `X-Request-ID`, the same value the router and the workers log), and the
formatter writes every such field beside the message:

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "raylane.worker",
     "msg": "job finished", "request_id": "7c0f…", "job": "a91e…", "attempt": 1, …}

Log lines never carry prompt or completion text, nor API keys: only ids, names, counts
and times. Router and worker replicas call `configure` once; their JSON lines go to the
process's stderr, which Ray keeps in the session's `logs/worker-*.err` files and shows
on the console of `raylane serve`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

LEVEL_ENV = "RAYLANE_LOG_LEVEL"
"""Environment variable with the level of raylane's loggers (default `INFO`)."""

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
"""Attributes every LogRecord has; anything else on a record came as `extra`."""


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str | None = None) -> None:
    """Write raylane's records as JSON lines to stderr, once per process."""
    logger = logging.getLogger("raylane")
    logger.setLevel((level or os.environ.get(LEVEL_ENV) or "INFO").upper())
    if any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logger.addHandler(handler)
    logger.propagate = False
