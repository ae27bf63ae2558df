"""What the OpenAPI document says of endpoints that ask an agent: their 502, 503 and 504 answers, with codes.

::

    @documents_agent_errors                       # the gateway-to-agent failures and the host scope's 400, 404
    @documents_failures(agent_failures("DockerFailure", {502: (DOCKER_ERROR,)}))   # with the agent's own codes
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import Field, create_model
from quart_schema import document_response

from vapor.agentapi.errors import (
    AGENT_AUTH_FAILED,
    AGENT_TIMEOUT,
    AGENT_UNAVAILABLE,
    AGENT_UNREACHABLE,
    AUTH_UNAVAILABLE,
)

from ._schema import ErrorBody, Failure

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


# The codes of the 502, 503 and 504 answers of every endpoint that asks an agent: the gateway's own, and
# AUTH_UNAVAILABLE, the agent's 503 when the Kubernetes API cannot review the gateway's token.
AGENT_FAILURE_CODES: dict[int, tuple[str, ...]] = {
    502: (AGENT_UNREACHABLE, AGENT_AUTH_FAILED),
    503: (AGENT_UNAVAILABLE, AUTH_UNAVAILABLE),
    504: (AGENT_TIMEOUT,),
}


def failure_with_codes(name: str, codes: tuple[str, ...], description: str) -> type[Failure]:
    """A Failure whose ``error.code`` is one of ``codes``, listed in the OpenAPI document (an enum, or a const)."""
    body = create_model(
        f"{name}Error",
        __base__=ErrorBody,
        code=(Literal[codes], Field(description="One of " + ", ".join(codes) + ".")),  # type: ignore[arg-type]
    )
    model: type[Failure] = create_model(name, __base__=Failure, __doc__=description, error=(body, ...))
    return model


def agent_failures(name: str, extra: Mapping[int, tuple[str, ...]] | None = None) -> dict[int, type[Failure]]:
    """The documented 502, 503 and 504 answers of an agent-backed endpoint, with ``extra`` codes by status."""
    return {
        status: failure_with_codes(
            f"{name}{status}",
            codes + tuple((extra or {}).get(status, ())),
            f"The host's agent could not be asked, or failed ({status}).",
        )
        for status, codes in AGENT_FAILURE_CODES.items()
    }


def documents_failures(failures: Mapping[int, type[Failure]], *, host_scoped: bool = True) -> Callable[[F], F]:
    """Add ``failures`` (status: model) to a route's OpenAPI responses, and the host scope's 400 and 404."""

    def decorator(func: F) -> F:
        for status in (400, 404) if host_scoped else ():  # ?host= empty, no such host (see _hostscope)
            func = document_response(Failure, status)(func)
        for status, model in failures.items():
            func = document_response(model, status)(func)
        return func

    return decorator


AGENT_FAILURES = agent_failures("AgentFailure")


def documents_agent_errors(func: F) -> F:
    """Add the gateway-to-agent failures (502, 503, 504, with their codes) and the host scope's to a route's OpenAPI."""
    return documents_failures(AGENT_FAILURES)(func)
