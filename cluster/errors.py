"""What can go wrong with a request, as one exception hierarchy.

    RaylaneError
    ├── InvalidRequest          the request is malformed or asks the impossible (400)
    │   └── ContextLengthExceeded   prompt + max_tokens exceed the model's context (400)
    ├── AuthenticationError     no API key, or an unknown or revoked one (401)
    ├── PermissionDenied        the key may not use this model or route (403)
    ├── NotFound                no such thing (404)
    │   └── ModelNotFound           no model or alias of that name is served (404)
    ├── PayloadTooLarge         the body exceeds the router's limit (413)
    ├── QueueFull               the model's queue is at its bound; retry later (429)
    │   ├── WaitExceedsDeadline     the estimated queue wait exceeds the deadline (429)
    │   ├── RateLimited             the key's requests or tokens per minute are spent (429)
    │   └── InsufficientQuota       the key's token budget cannot cover max_tokens (429)
    ├── RequestTimeout          the deadline passed (504)
    │   └── QueueTimeout            ... before any worker started the job
    ├── ServiceUnavailable      Redis or every worker is unreachable (503)
    └── EngineError             the engine failed while generating (500)
        └── JobLost                 the job was dead-lettered or its stream broke

The router turns these into OpenAI-shaped error bodies in exactly one place
(`raylane.router.errors`); nothing else picks status codes.
"""

from __future__ import annotations


class RaylaneError(Exception):
    """Base of every error raylane reports to a caller."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(RaylaneError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationError(RaylaneError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(RaylaneError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(RaylaneError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(RaylaneError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class QueueFull(RaylaneError):
    status = 429
    type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WaitExceedsDeadline(QueueFull):
    code = "wait_exceeds_deadline"


class RateLimited(QueueFull):
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class InsufficientQuota(QueueFull):
    type = "insufficient_quota"
    code = "insufficient_quota"


class RequestTimeout(RaylaneError):
    status = 504
    type = "timeout_error"
    code = "deadline_exceeded"


class QueueTimeout(RequestTimeout):
    code = "queue_timeout"


class ServiceUnavailable(RaylaneError):
    status = 503
    type = "service_unavailable"
    code = "unavailable"


class EngineError(RaylaneError):
    status = 500
    type = "server_error"
    code = "engine_error"


class JobLost(EngineError):
    code = "job_lost"
