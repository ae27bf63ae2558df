"""Errors of :mod:`vapor.kube`.

::

    KubeError            any failed call; .status and .reason from the API server
    ├── NotFound         404: the object does not exist
    └── Conflict         409: stale resourceVersion, or the name is taken
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A call to the API server failed."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


class NotFound(KubeError):
    """The object does not exist (404)."""


class Conflict(KubeError):
    """The object changed since it was read, or already exists (409)."""


def from_api_exception(exc: Any) -> KubeError:
    """Turn a kubernetes client ApiException into the matching KubeError."""
    status = int(getattr(exc, "status", 0) or 0)
    body: dict[str, Any] = {}
    try:
        body = json.loads(exc.body) if getattr(exc, "body", None) else {}
    except (TypeError, ValueError):
        body = {}
    reason = str(body.get("reason") or getattr(exc, "reason", "") or "")
    message = str(body.get("message") or getattr(exc, "reason", "") or str(exc))
    cls = NotFound if status == 404 else Conflict if status == 409 else KubeError
    error = cls(status, reason, message, body)
    error.__cause__ = exc
    return error
