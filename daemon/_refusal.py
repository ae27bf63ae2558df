"""``Refusal``: a failure a client of the node-local API should see, in the contract's terms.

An HTTP status, a contract error code, a sentence and optional details. The
node API answers any Refusal with the contract's error envelope, which the
gateway passes through unchanged. Each area has its own subclass (NodeAPIError,
ContainerError, AccountError), so that code can catch just its own.
"""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """A failure the client should see: HTTP status, a contract code, a sentence and optional details."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The ``error`` object of the contract's envelope."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error
