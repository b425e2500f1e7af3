"""`raylane deploy`: put the raylane Serve application on a running Ray cluster.

It speaks Serve's REST API on the Ray dashboard, as `serve deploy` does: one PUT of the
whole Serve config, then it watches the application until it is RUNNING or has failed.
Serve applies a changed config by rolling replicas: new ones start, old ones stop after
their graceful shutdown, and a stopping worker hands its unfinished jobs back to the queue
(`pools[].drain_s`), so an update drops no queued job.

This module must never import the router or the workers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from raylane.cluster.app import APP_NAME

FAILED = ("DEPLOY_FAILED", "UNHEALTHY")


class DeployError(RuntimeError):
    """The cluster refused the application, it failed to start, or it did not in time."""


def deploy(address: str, config: dict[str, Any], timeout_s: float = 900.0,
           echo: Callable[[str], None] = print, wait: bool = True) -> float:
    """PUT the Serve `config` to the dashboard at `address` and (with `wait`) wait until the
    raylane application runs it; returns seconds taken. Raises DeployError."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
    from ray.exceptions import RayError

    began = time.monotonic()
    _use_token_if_any()
    try:
        client = ServeSubmissionClient(address)
        before = _app(client.get_serve_details()).get("last_deployed_time_s") or 0.0
        client.deploy_applications(config)
    except (RuntimeError, ValueError, OSError, RayError) as exc:
        raise DeployError(f"cannot deploy to {address}: {exc}") from exc
    if not wait:
        echo(f"raylane: submitted to {address}")
        return time.monotonic() - began
    echo(f"raylane: submitted to {address}; waiting for application {APP_NAME!r}")
    wait_running(client.get_serve_details, before, began + timeout_s, echo)
    return time.monotonic() - began


def wait_running(details: Callable[[], dict[str, Any]], before: float, deadline: float,
                 echo: Callable[[str], None] = print, poll_s: float = 1.0) -> None:
    """Wait until the application deployed after `before` is RUNNING; DeployError if it
    fails or `deadline` (monotonic) passes."""
    shown = None
    app: dict[str, Any] = {}
    while time.monotonic() < deadline:
        app = _app(details())
        if (app.get("last_deployed_time_s") or 0.0) > before:
            status = app.get("status")
            if status == "RUNNING":
                return
            if status in FAILED:
                raise DeployError(f"application {APP_NAME!r} is {status}: {_why(app)}")
            if status != shown:
                echo(f"raylane: {status}")
                shown = status
        time.sleep(poll_s)
    raise DeployError(f"application {APP_NAME!r} is not running in time "
                      f"(status {app.get('status')}): {_why(app)}")


def _use_token_if_any() -> None:
    """Send the cluster's auth token when one is here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) and RAY_AUTH_MODE is unset, as `ray.init` does when it connects: a
    cluster `ray start`/`ray.init` made with Ray's token auth refuses requests without it."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        # Quiet: it logs a warning each time it finds a token.
        logging.getLogger(maybe_enable_token_auth_if_token_available.__module__).setLevel(
            logging.ERROR)
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _app(details: dict[str, Any]) -> dict[str, Any]:
    return dict((details.get("applications") or {}).get(APP_NAME) or {})


def _why(app: dict[str, Any]) -> str:
    """The application's message, and every deployment's that says something."""
    lines = [app.get("message") or ""]
    for name, deployment in (app.get("deployments") or {}).items():
        if deployment.get("message"):
            lines.append(f"{name}: {deployment['status']}: {deployment['message']}")
    return "\n".join(line for line in lines if line) or "no message"
