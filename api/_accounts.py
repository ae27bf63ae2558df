"""Who may log in, and with which role: a Linux user's password and groups, checked where the users live.

Where the users live is the gateway's own machine by default (``make dev``,
the gateway on a host) or, when ``VAPOR_AUTH_HOSTS`` names hosts, those
hosts: the gateway asks an agent over the node-local API (``/accounts``), as
a gateway pod in a cluster has no users of its own. Either way PAM checks the
password (vapor.hostaccounts) and the gateway turns groups into a role:
members of an admin group get ``admin``, everyone else ``viewer``.

Login hosts are asked in their order, and the first that answers decides: a
refused password is final, only a host that cannot be asked (unregistered,
no endpoint, unreachable, refusing the gateway, no answer within
``VAPOR_AUTH_TIMEOUT``) passes the question to the next. So the hosts must
share their accounts (a directory, or configuration management), which is
what a list of them is for: logins that survive one node being down. When none can be asked, login and refresh fail
with the last host's 502/503/504 error: a gateway never falls back to its own
users.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vapor import hostaccounts
from vapor.agentapi.errors import (
    AGENT_AUTH_FAILED,
    AGENT_TIMEOUT,
    AGENT_UNAVAILABLE,
    AGENT_UNREACHABLE,
    AUTH_UNAVAILABLE,
    NOT_FOUND,
    RATE_LIMITED,
)
from vapor.loginguard import LoginBackoff, in_pool

from ._agents import agents
from ._errors import APIError
from ._lookups import find_host
from ._metrics import LOGIN_HOST_FAILURES
from ._schema import Role
from ._state import gateway

log = logging.getLogger("vapor.gateway.accounts")

# A login host that fails with one of these could not be asked: the next one is.
UNASKABLE = frozenset({AUTH_UNAVAILABLE, AGENT_UNAVAILABLE, AGENT_UNREACHABLE, AGENT_AUTH_FAILED, AGENT_TIMEOUT})


@dataclass(frozen=True)
class Account:
    """A Linux user as the gateway sees it."""

    username: str
    role: Role
    groups: tuple[str, ...]


class AccountRefused(Exception):
    """The user is gone from the login host, or a login there would now be refused (locked, expired, ...)."""


def _account(username: str, groups: list[str]) -> Account:
    role: Role = "admin" if gateway().admin_groups.intersection(groups) else "viewer"
    return Account(username=username, role=role, groups=tuple(sorted(set(groups))))


async def _ask_host(name: str, method: str, path: str, json: Any) -> Any:
    try:
        host = find_host(name)
    except APIError:
        raise APIError(503, AUTH_UNAVAILABLE, f"the login host {name!r} (VAPOR_AUTH_HOSTS) is not registered") from None
    timeout = float(gateway().config.get("AUTH_TIMEOUT") or 0) or None  # None: the agents' own timeout
    return await agents().request(host, method, path, json=json, timeout=timeout)


async def _ask(login_hosts: tuple[str, ...], method: str, path: str, json: Any = None) -> Any:
    """The answer of the first login host that can be asked; the last host's failure when none can."""
    for position, name in enumerate(login_hosts, start=1):
        try:
            return await _ask_host(name, method, path, json)
        except APIError as exc:
            if exc.code not in UNASKABLE:
                raise
            LOGIN_HOST_FAILURES.labels(host=name, code=exc.code).inc()
            if position == len(login_hosts):
                raise
            log.warning("login host %r could not be asked (%s: %s); asking the next", name, exc.code, exc.message)
    raise AssertionError("no login hosts")


async def _verify_here(username: str, password: str) -> list[str] | None:
    """The groups if this machine's PAM accepts the password, under the account's guard (vapor.loginguard)."""
    state = gateway()
    service = str(state.config["PAM_SERVICE"])

    def check() -> Awaitable[list[str] | None]:
        return in_pool("password", hostaccounts.verify, service, username, password)

    try:
        return await state.login_guard.check(username, check)
    except LoginBackoff as exc:
        raise APIError(429, RATE_LIMITED, str(exc)) from None


async def verify(username: str, password: str) -> Account | None:
    """The account if the password is right, else None; 429 RATE_LIMITED while the account backs off."""
    login_hosts = gateway().auth_hosts
    if not login_hosts:
        groups = await _verify_here(username, password)
    else:
        answer = await _ask(login_hosts, "POST", "/accounts/check", {"username": username, "password": password})
        groups = answer.get("groups") if isinstance(answer, dict) and answer.get("accepted") is True else None
    return None if groups is None else _account(username, list(groups))


async def lookup(username: str) -> Account:
    """The account as it is now (its role follows group changes); AccountRefused when it may no longer log in."""
    login_hosts = gateway().auth_hosts
    if not login_hosts:
        service = str(gateway().config["PAM_SERVICE"])
        standing = await in_pool("lookup", hostaccounts.standing, service, username)
    else:
        try:
            standing = await _ask(login_hosts, "GET", "/accounts/" + quote(username, safe=""))
        except APIError as exc:
            if exc.status == 404 and exc.code == NOT_FOUND:
                standing = None
            else:
                raise
    if standing is None:
        raise AccountRefused(f"user {username!r} no longer exists")
    if standing.get("refused"):
        raise AccountRefused(f"user {username!r} may no longer log in: {standing['refused']}")
    return _account(username, list(standing.get("groups") or []))
