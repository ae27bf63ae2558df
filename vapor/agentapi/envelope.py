"""The contract's envelope: every answer is ``{"status": "success", "data": ...}`` or ``{"status": "error", ...}``.

The models document the envelope in the gateway's OpenAPI description;
:func:`success` and :func:`error` build the same bodies where a model would
only copy the data (the agent's answers), and :func:`unwrap` reads an
agent's answer on the gateway's side.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from .errors import AGENT_ERROR, Refusal

T = TypeVar("T")


class Success(BaseModel, Generic[T]):
    """A successful answer: the result is in ``data``."""

    status: Literal["success"] = "success"
    data: T


class FieldError(BaseModel):
    """One field that failed validation."""

    field: str = Field(description="Dotted path of the field, for example disks[0].size.")
    message: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="UNAUTHORIZED, INVALID_INPUT, NOT_FOUND, PERMISSION_DENIED, ALREADY_EXISTS, ...")
    message: str = Field(description="A sentence for people.")
    details: str | None = Field(default=None, description="More about the failure, when there is more.")
    fields: list[FieldError] | None = Field(default=None, description="Each bad field (INVALID_INPUT only).")


class Failure(BaseModel):
    """A failed answer."""

    status: Literal["error"] = "error"
    error: ErrorBody


class NotAnEnvelope(ValueError):
    """An answer that is neither envelope."""


def success(data: Any) -> dict[str, Any]:
    """``{"status": "success", "data": data}`` (a :class:`Success`, without copying ``data``)."""
    return {"status": "success", "data": data}


def error(code: str, message: str, details: str | None = None) -> dict[str, Any]:
    """The error envelope (a :class:`Failure`); empty details are left out."""
    error = {"code": code, "message": message, **({"details": details} if details else {})}
    return {"status": "error", "error": error}


def unwrap(status: int, body: Any) -> Any:
    """The ``data`` of a success envelope; a Refusal with ``status`` for an error envelope; NotAnEnvelope else."""
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise NotAnEnvelope(f"not the contract's envelope (HTTP {status})")
    if body["status"] == "success":
        return body.get("data")
    found = body.get("error")
    failure = found if isinstance(found, dict) else {}
    details = failure.get("details")
    raise Refusal(
        status,
        str(failure.get("code") or AGENT_ERROR),
        str(failure.get("message") or "the agent refused the request"),
        str(details) if details is not None else None,
    )
