"""The one place where errors become HTTP: OpenAI-shaped bodies and status codes.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Errors of the Anthropic Messages API (`/v1/messages`) take Anthropic's shape, with
the same status codes:

    {"type": "error", "error": {"type": ..., "message": ...}}

Errors of the Ollama API (`/api/*`) are Ollama's `{"error": message}`, same statuses.

Every route raises `raylane.cluster.errors` exceptions; the handlers installed
by `install` turn them (and anything unexpected) into responses.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from raylane.cluster.errors import InvalidRequest, QueueFull, RaylaneError
from raylane.cluster.yamlpos import split_error
from raylane.router import request_ids

T = TypeVar("T")

log = logging.getLogger("raylane.router")

def error_body(exc: RaylaneError) -> dict:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.code}}


ANTHROPIC_PATHS = ("/v1/messages",)
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error",
}
"""Anthropic's error type for each status raylane answers with; otherwise
`invalid_request_error` (4xx) or `api_error`."""


def anthropic_error_body(exc: RaylaneError) -> dict:
    """An error in Anthropic's shape: the body of an error answer, or a stream's error event."""
    kind = ANTHROPIC_TYPES.get(exc.status, "invalid_request_error" if exc.status < 500
                               else "api_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


OLLAMA_PREFIX = "/api/"
"""Errors of the Ollama API (`/api/*`) take Ollama's shape, with the same status codes."""


OLLAMA_FIELDS = {"response_format.json_schema.schema": "format"}
"""A worker's name for a field (OpenAI's), where the Ollama API calls it otherwise."""


def ollama_error_body(exc: RaylaneError) -> dict:
    """An error in Ollama's shape: the body of an error answer, or a stream's last line.

    The shape has no `param`, so the message names the field (in Ollama's terms) when it
    does not already."""
    param = OLLAMA_FIELDS.get(exc.param or "", exc.param)
    if param and param not in exc.message:
        return {"error": f"{exc.message} (field: {param})"}
    return {"error": exc.message}


def error_response(exc: RaylaneError, path: str = "") -> JSONResponse:
    headers = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(exc.retry_after)
    anthropic = path.startswith(ANTHROPIC_PATHS)
    body = anthropic_error_body(exc) if anthropic else error_body(exc)
    if path.startswith(OLLAMA_PREFIX):
        body = ollama_error_body(exc)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def invalid_body(exc: msgspec.DecodeError) -> InvalidRequest:
    """A msgspec decoding error as a 400 that names the offending field."""
    if not isinstance(exc, msgspec.ValidationError):
        return InvalidRequest(f"The request body is not valid JSON: {exc}")
    message, path, key = split_error(exc)
    param = path.removeprefix("$").removeprefix(".")
    if key is not None:
        unknown = message.startswith("Object contains unknown field")
        param = f"{param}.{key}" if param else key
        message = (f"Unrecognized request argument supplied: {param}" if unknown
                   else f"Missing required parameter: '{param}'.")
        return InvalidRequest(message, param=param)
    if not param:
        return InvalidRequest(f"Invalid request body: {message}")
    return InvalidRequest(f"{message} (at '{param}')", param=param)


def convert_at(raw: Any, type_: type[T], where: str) -> T:
    """`raw` (a part of a body decoded loosely) as `type_`, or a 400 whose `param` names
    the field within `where` (`tools[2].name`)."""
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        error = invalid_body(exc)
        raise InvalidRequest(f"{where}: {error.message}",
                             param=f"{where}.{error.param}" if error.param else where) from None


def install(app: FastAPI) -> None:
    """Register the handlers that answer every error in OpenAI's shape."""

    @app.exception_handler(RaylaneError)
    async def raylane_error(request: Request, exc: RaylaneError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = RaylaneError(str(exc.detail))
        error.status = exc.status_code
        error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(error, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequest(str(exc)), request.url.path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": request_ids.of(request.scope)})
        error = RaylaneError(f"Internal error: {type(exc).__name__}")
        response = error_response(error, request.url.path)
        response.headers.update(request_ids.echo_headers(request.scope))
        return response
