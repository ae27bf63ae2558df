"""Bearer-token checks: every route but login and refresh names the role it needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from quart import g, request
from quart_schema import document_response, security_scheme

from vapor.agentapi.errors import PERMISSION_DENIED, UNAUTHORIZED

from ._errors import APIError
from ._schema import Failure, Role
from ._state import gateway
from ._tokens import InvalidToken

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ROLE_ATTRIBUTE = "_vapor_required_role"


@dataclass(frozen=True)
class User:
    """The user a request's token speaks for."""

    username: str
    role: Role


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise APIError(401, UNAUTHORIZED, "missing bearer token: send the header Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, UNAUTHORIZED, "the Authorization header must read: Bearer <token>")
    return token.strip()


def authenticate() -> User:
    """The user of the current request; UNAUTHORIZED without a valid token."""
    signer = gateway().signer
    assert signer is not None
    try:
        claims = signer.verify(_bearer())
    except InvalidToken as exc:
        raise APIError(401, UNAUTHORIZED, str(exc)) from None
    return User(username=claims.username, role=claims.role)


def current_user() -> User:
    """The user checked by ``require`` for this request."""
    return cast(User, g.user)


def require(role: Role) -> Callable[[F], F]:
    """Let the route run only for a valid token whose role is ``role`` (admin) or better."""

    def decorator(func: F) -> F:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = authenticate()
            if role == "admin" and user.role != "admin":
                groups = ", ".join(sorted(gateway().admin_groups)) or "(none configured)"
                raise APIError(
                    403,
                    PERMISSION_DENIED,
                    f"user {user.username!r} has role viewer and may only read; "
                    f"changes need role admin (a member of: {groups})",
                )
            g.user = user
            return await func(*args, **kwargs)

        setattr(wrapper, ROLE_ATTRIBUTE, role)
        documented = document_response(Failure, 401)(wrapper)
        if role == "admin":
            documented = document_response(Failure, 403)(documented)
        return cast(F, security_scheme([{"bearer": []}])(documented))

    return decorator
