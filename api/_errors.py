"""The one error type of the gateway, and the handlers that turn every failure into the error envelope.

::

    APIError(status, code, message, details)   raised by routes and helpers
    RequestSchemaValidationError               a body or query string that does not fit its model
    HTTPException                              unknown route (404), wrong method (405), ...
    KubeError                                  the API server refused a call (503 while it is not serving,
                                               a 403 included while it is not ready: see _forbidden)
    aiohttp.ClientError, TimeoutError          the API server cannot be reached: 503 KUBERNETES_NOT_INSTALLED
    Exception                                  anything else: 500 INTERNAL_ERROR, logged, never shown

Every one of them answers ``{"status": "error", "error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import aiohttp
from pydantic import ValidationError
from quart import Quart, Response, current_app
from quart_schema import RequestSchemaValidationError, ResponseSchemaValidationError
from werkzeug.exceptions import HTTPException

from vapor.agentapi.errors import (
    ALREADY_EXISTS,
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_INPUT,
    KUBERNETES_ERROR,
    KUBERNETES_NOT_INSTALLED,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNAUTHORIZED,
    Refusal,
)
from vapor.kube import KubeError

from ._forbidden import NOT_AUTHORIZING, users_own
from ._schema import ErrorBody, Failure, FieldError

log = logging.getLogger("vapor.gateway")

# Failures between the gateway and an agent (see _agents).

# Bad input is always 400, whether the JSON is broken or a field is out of range.
INVALID_INPUT_STATUS = 400
# What the API server answers while it starts, while its storage (etcd) is away, or when a call timed out there.
NOT_SERVING = frozenset({429, 503, 504})


class APIError(Refusal):
    """A failure the client should see: HTTP status, a contract code, a sentence, and the bad fields if any."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        fields: list[FieldError] | None = None,
    ) -> None:
        super().__init__(status, code, message, details)
        self.fields = fields


def error_response(error: APIError) -> Response:
    """The error envelope of ``error`` as a response."""
    body = Failure(error=ErrorBody(code=error.code, message=error.message, details=error.details, fields=error.fields))
    response = cast(Response, current_app.json.response(body.model_dump(mode="json", exclude_none=True)))
    response.status_code = error.status
    return response


def invalid_input(exc: ValidationError | Exception, where: str = "body") -> APIError:
    """INVALID_INPUT naming each bad field of a pydantic validation error."""
    if not isinstance(exc, ValidationError):
        return APIError(INVALID_INPUT_STATUS, INVALID_INPUT, f"invalid request {where}", str(exc))
    fields = [FieldError(field=_field_name(e["loc"]), message=_message(e)) for e in exc.errors()]
    if not fields:
        return APIError(INVALID_INPUT_STATUS, INVALID_INPUT, f"invalid request {where}")
    first = fields[0]
    message = f"invalid {where}: " + (f"{first.field}: {first.message}" if first.field else first.message)
    details = "; ".join(f"{f.field}: {f.message}" if f.field else f.message for f in fields)
    return APIError(INVALID_INPUT_STATUS, INVALID_INPUT, message, details, fields)


def _field_name(loc: tuple[Any, ...]) -> str:
    # Union members add their type name to the location ("memory.str"); a client wants the field.
    parts = [p for p in loc if not (isinstance(p, str) and p in {"str", "int"})]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _message(error: Any) -> str:
    if not error["loc"] and error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return "the request body must be a JSON object"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def register_error_handlers(app: Quart) -> None:
    """Answer every failure with the error envelope."""

    @app.errorhandler(APIError)
    async def api_error(error: APIError) -> Response:
        return error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def bad_request(error: RequestSchemaValidationError) -> Response:
        where = "query string" if type(error).__name__ == "QuerystringValidationError" else "body"
        return error_response(invalid_input(error.validation_error, where))

    @app.errorhandler(KubeError)
    async def kube_error(error: KubeError) -> Response:
        return error_response(await refusal(error))

    @app.errorhandler(aiohttp.ClientError)
    async def kube_unreachable(error: aiohttp.ClientError) -> Response:
        return error_response(unreachable(error))

    @app.errorhandler(TimeoutError)
    async def kube_timeout(error: TimeoutError) -> Response:
        return error_response(unreachable(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = {
            400: INVALID_INPUT,
            401: UNAUTHORIZED,
            403: PERMISSION_DENIED,
            404: NOT_FOUND,
            405: METHOD_NOT_ALLOWED,
        }.get(status, INVALID_INPUT if 400 <= status < 500 else INTERNAL_ERROR)
        messages = {
            404: "no such endpoint; the API lives under /api/v1 (see /docs)",
            405: "this endpoint does not accept that method",
            413: "the request body is too large",
        }
        response = error_response(APIError(status, code, messages.get(status, error.description or error.name)))
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(ResponseSchemaValidationError)
    async def bad_response(error: ResponseSchemaValidationError) -> Response:
        log.error("a response did not fit its model: %s", error.validation_error)
        return error_response(APIError(500, INTERNAL_ERROR, "internal error"))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unexpected error", exc_info=error)
        return error_response(APIError(500, INTERNAL_ERROR, "internal error; the gateway's log has the details"))


def unreachable(error: BaseException) -> APIError:
    """503: the Kubernetes API server does not answer (down, restarting, or too slow)."""
    return APIError(503, KUBERNETES_NOT_INSTALLED, "the Kubernetes API server cannot be reached", str(error) or None)


async def refusal(error: KubeError) -> APIError:
    """The client-facing form of a refusal by the API server (``from_kube_error``), a 403 checked first.

    A 403 is Kubernetes RBAC's verdict on the user only once the API server is
    ready; before that it is 503, retryable (see ``_forbidden``).
    """
    return from_kube_error(error) if await users_own(error) else not_authorizing(error)


def not_authorizing(error: KubeError) -> APIError:
    """503: the API server refused a request before it could authorize it (it is starting)."""
    return APIError(503, KUBERNETES_NOT_INSTALLED, NOT_AUTHORIZING, error.message)


def from_kube_error(error: KubeError) -> APIError:
    """The client-facing form of a refusal by the API server."""
    if error.status == 404:
        return APIError(404, NOT_FOUND, error.message)
    if error.status == 403:  # the gateway writes as the user: Kubernetes RBAC refused that user
        return APIError(403, PERMISSION_DENIED, f"Kubernetes refused this: {error.message}")
    if error.status == 409:
        if error.reason == "AlreadyExists":
            return APIError(409, ALREADY_EXISTS, error.message)
        return APIError(409, CONFLICT, error.message)
    if error.status in (400, 422):  # a bad name or value from the request; the message names it
        causes = (error.body.get("details") or {}).get("causes") or []
        details = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".lstrip(": ") for c in causes)
        return APIError(INVALID_INPUT_STATUS, INVALID_INPUT, error.message, details or None)
    if error.status in NOT_SERVING:
        return APIError(
            503, KUBERNETES_NOT_INSTALLED, f"the Kubernetes API server is not serving: {error.status} {error.reason}"
        )
    log.error("the Kubernetes API refused a call: %s %s: %s", error.status, error.reason, error.message)
    return APIError(502, KUBERNETES_ERROR, f"the Kubernetes API answered {error.status} {error.reason}")
