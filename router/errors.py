"""The one place where errors become HTTP: OpenAI-shaped bodies and status codes.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Every route raises `raylane.cluster.errors` exceptions; the handlers installed
by `install` turn them (and anything unexpected) into responses.
"""

from __future__ import annotations

import logging

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from raylane.cluster.errors import InvalidRequest, QueueFull, RaylaneError
from raylane.cluster.yamlpos import split_error

log = logging.getLogger("raylane.router")

def error_body(exc: RaylaneError) -> dict:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.code}}


def error_response(exc: RaylaneError) -> JSONResponse:
    headers = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


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


def install(app: FastAPI) -> None:
    """Register the handlers that answer every error in OpenAI's shape."""

    @app.exception_handler(RaylaneError)
    async def raylane_error(_: Request, exc: RaylaneError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        error = RaylaneError(str(exc.detail))
        error.status = exc.status_code
        error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequest(str(exc)))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(RaylaneError(f"Internal error: {type(exc).__name__}"))
