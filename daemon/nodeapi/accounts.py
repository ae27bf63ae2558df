"""``/accounts`` of the node-local API: a login's password checked where the users live.

In a cluster the gateway's pod has no users of its own; it asks the agent of
a host of ``VAPOR_AUTH_HOSTS`` instead (DESIGN: "in a cluster the
gateway asks an agent"). The agent checks the password with PAM (service
``--pam-service``, default ``login``) and reads the user's groups; the gateway
decides the role from them. Both run in the node's root (host/hostroot).

- ``POST /accounts/check`` ``{"username", "password"}`` answers
  ``{"accepted": true, "username", "groups"}`` or ``{"accepted": false}``:
  a refused password is an answer, not an error, so that the gateway can
  tell it from a failure to ask.
- ``GET /accounts/{username}`` answers ``{"username", "groups", "refused"}``
  or 404 NOT_FOUND. On each refresh the gateway checks that the user still
  exists and that a login would not now be refused (``refused``: PAM's
  account stage or a locked password, else null), and takes the role from
  the current groups.

Passwords are never logged, nor the name of a refused login (a mark instead,
see vapor.redact). At most ``CONCURRENT_CHECKS`` PAM conversations
run at once (each holds a thread, and PAM delays failures by seconds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from vapor.agentapi.errors import INVALID_INPUT, NOT_FOUND, RATE_LIMITED
from vapor.hostaccounts import MAX_USERNAME, Credentials
from vapor.loginguard import LoginBackoff, LoginGuard
from vapor.redact import name_mark

from .context import CALLER, NodeContext, host_root_of, read_body
from .envelope import NodeAPIError, ok

log = logging.getLogger("vapor.agent.accounts")

CONCURRENT_CHECKS = 8


def routes(node: NodeContext) -> list[web.RouteDef]:
    """Check a password, look an account up."""
    service = node.config.pam_service
    checks = asyncio.Semaphore(CONCURRENT_CHECKS)
    root = host_root_of(node)
    guard = LoginGuard(fail_delay=node.config.login_fail_delay, backoff_max=node.config.login_backoff_max)

    async def post_check(request: web.Request) -> web.Response:
        body = await read_body(request, Credentials)

        async def check() -> list[str] | None:
            async with checks:  # one call (one child with --host-root): the password, then the groups
                groups: list[str] | None = await root.call("verify", service, body.username, body.password)
            accepted = groups is not None  # PAM may accept a user the group database lacks: refused too
            user = body.username if accepted else name_mark(body.username)  # a refused name may be a password
            log.info(
                "password checked",
                extra={"user": user, "accepted": accepted, "pam_service": service, "caller": request.get(CALLER)},
            )
            return groups

        try:
            groups = await guard.check(body.username, check)
        except LoginBackoff as exc:
            log.info("password not checked: the account backs off", extra={"user": name_mark(body.username)})
            raise NodeAPIError(429, RATE_LIMITED, str(exc)) from None
        if groups is None:
            return ok({"accepted": False})
        return ok({"accepted": True, "username": body.username, "groups": groups})

    async def get_account(request: web.Request) -> web.Response:
        name = request.match_info["username"]
        if not 0 < len(name) <= MAX_USERNAME:
            raise NodeAPIError(400, INVALID_INPUT, f"a user name has 1 to {MAX_USERNAME} characters")
        standing = await root.call("standing", service, name)
        if standing is None:
            raise NodeAPIError(404, NOT_FOUND, f"user {name[:64]!r} does not exist on this host")
        if standing["refused"]:
            log.info("account may no longer log in", extra={"user": name, "reason": standing["refused"]})
        answer: dict[str, Any] = {"username": name, **standing}
        return ok(answer)

    return [
        web.post("/accounts/check", post_check),
        web.get("/accounts/{username}", get_account),
    ]
