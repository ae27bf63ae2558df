"""The contract's envelope on every answer of the node API: ``ok(data)``, and every failure as an error body.

Route modules answer with :func:`ok` and fail by raising a Refusal
(:class:`NodeAPIError`, or an area's own such as ContainerError or
AccountError); :func:`envelope_middleware` turns those, aiohttp's own HTTP
errors (unknown route, wrong method) and any surprise into the error envelope,
which the gateway passes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from vapor.agentapi import envelope
from vapor.agentapi.errors import (
    INTERNAL_ERROR,
    INVALID_INPUT,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNAUTHORIZED,
    Refusal,
)

log = logging.getLogger("vapor.agent.nodeapi")


class NodeAPIError(Refusal):
    """A refusal of the node API itself."""


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def ok(data: Any, status: int = 200) -> web.Response:
    """``{"status": "success", "data": data}``."""
    return web.Response(status=status, body=_dumps(envelope.success(data)), content_type="application/json")


def failure(status: int, code: str, message: str, details: str | None = None) -> web.Response:
    """The contract's error envelope."""
    body = _dumps(envelope.error(code, message, details))
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def envelope_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure, including the auth checks, as the contract's error envelope."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 401: UNAUTHORIZED, 403: PERMISSION_DENIED}.get(
            exc.status, INVALID_INPUT if exc.status < 500 else INTERNAL_ERROR
        )
        response = failure(exc.status, code, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Refusal as exc:
        return failure(exc.status, exc.code, exc.message, exc.details)
    except Exception:
        log.exception("node API request failed", extra={"path": request.path, "method": request.method})
        return failure(500, INTERNAL_ERROR, "internal error; the agent's log has the details")
