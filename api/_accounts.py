"""Who may log in, and with which role: a Linux user's password and groups, checked where the users live.

Where the users live is the gateway's own machine by default (``make dev``,
the gateway on a host) or, when ``VAPOR_AUTH_HOST`` names a host, that host:
the gateway asks its agent over the node-local API (``/accounts``), as a
gateway pod in a cluster has no users of its own. Either way PAM checks the
password (vapor.hostaccounts) and the gateway turns groups into a role:
members of an admin group get ``admin``, everyone else ``viewer``.

If the login host cannot be asked, login and refresh fail with the agent's
502/503/504 error: a gateway never falls back to another set of users.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vapor import hostaccounts

from ._agents import agents
from ._errors import AUTH_UNAVAILABLE, NOT_FOUND, APIError
from ._schema import Role
from ._state import gateway
from .hosts import find_host


@dataclass(frozen=True)
class Account:
    """A Linux user as the gateway sees it."""

    username: str
    role: Role
    groups: tuple[str, ...]


def _account(username: str, groups: list[str]) -> Account:
    role: Role = "admin" if gateway().admin_groups.intersection(groups) else "viewer"
    return Account(username=username, role=role, groups=tuple(sorted(set(groups))))


def _auth_host() -> str | None:
    return str(gateway().config.get("AUTH_HOST") or "").strip() or None


async def _ask(auth_host: str, method: str, path: str, json: Any = None) -> Any:
    try:
        host = find_host(auth_host)
    except APIError:
        raise APIError(
            503, AUTH_UNAVAILABLE, f"the login host {auth_host!r} (VAPOR_AUTH_HOST) is not registered"
        ) from None
    return await agents().request(host, method, path, json=json)


async def verify(username: str, password: str) -> Account | None:
    """The account if the password is right, else None."""
    auth_host = _auth_host()
    if auth_host is None:
        service = str(gateway().config["PAM_SERVICE"])
        groups = await asyncio.to_thread(hostaccounts.verify, service, username, password)
    else:
        answer = await _ask(auth_host, "POST", "/accounts/check", {"username": username, "password": password})
        groups = answer.get("groups") if isinstance(answer, dict) and answer.get("accepted") is True else None
    return None if groups is None else _account(username, list(groups))


async def lookup(username: str) -> Account | None:
    """The account as it is now (its role follows group changes), or None when the user is gone."""
    auth_host = _auth_host()
    if auth_host is None:
        groups = await asyncio.to_thread(hostaccounts.groups_of, username)
        return None if groups is None else _account(username, groups)
    try:
        answer = await _ask(auth_host, "GET", "/accounts/" + quote(username, safe=""))
    except APIError as exc:
        if exc.status == 404 and exc.code == NOT_FOUND:
            return None
        raise
    return _account(username, list(answer.get("groups") or []))
