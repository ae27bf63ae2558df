"""The error codes of the REST contract, declared once for the gateway and the agents, and ``Refusal``.

Every failure a client sees is ``{"status": "error", "error": {"code",
"message", "details"}}`` with one of these codes. The agents answer the
gateway in the same envelope and the gateway passes their answers through
unchanged, so one code means one thing on both sides.
"""

from __future__ import annotations

from typing import Any

# The contract's own codes.
UNAUTHORIZED = "UNAUTHORIZED"  # no token, or one that is not accepted
INVALID_INPUT = "INVALID_INPUT"  # a body, path or query the endpoint does not take
NOT_FOUND = "NOT_FOUND"
PERMISSION_DENIED = "PERMISSION_DENIED"  # the caller is known and may not do this
DOCKER_ERROR = "DOCKER_ERROR"  # the Docker daemon refused or failed
KUBERNETES_NOT_INSTALLED = "KUBERNETES_NOT_INSTALLED"
NO_RUNTIME_AVAILABLE = "NO_RUNTIME_AVAILABLE"  # no container runtime answers on the host

# Vapor's additions.
ALREADY_EXISTS = "ALREADY_EXISTS"
CONFLICT = "CONFLICT"  # the object changed meanwhile, or the host is using what the request would change
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
RATE_LIMITED = "RATE_LIMITED"
KUBERNETES_ERROR = "KUBERNETES_ERROR"  # the API server refused a call the gateway made
INTERNAL_ERROR = "INTERNAL_ERROR"  # a bug or a surprise; the component's log has the details
AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"  # who the caller is cannot be checked now (login host, TokenReview)
RUNTIME_ERROR = "RUNTIME_ERROR"  # a CRI runtime (containerd, CRI-O) refused or failed
TIMEOUT = "TIMEOUT"  # the agent did not report a change in time
INSUFFICIENT_STORAGE = "INSUFFICIENT_STORAGE"  # the host has no room for it (507: an image upload)

# Between the gateway and an agent (the gateway's answers when it cannot get the agent's).
AGENT_UNAVAILABLE = "AGENT_UNAVAILABLE"  # the Host publishes no usable node API
AGENT_UNREACHABLE = "AGENT_UNREACHABLE"  # no connection, a certificate that does not match, no envelope
AGENT_AUTH_FAILED = "AGENT_AUTH_FAILED"  # the agent refused the gateway's own token
AGENT_TIMEOUT = "AGENT_TIMEOUT"
AGENT_ERROR = "AGENT_ERROR"  # an agent's error envelope without a code


class Refusal(Exception):
    """A failure the client should see: HTTP status, a contract code, a sentence and optional details.

    The agent's node API answers any Refusal with the error envelope. Each
    area has its own subclass (NodeAPIError, ContainerError, AccountError),
    so that code can catch just its own.
    """

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
