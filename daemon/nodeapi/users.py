"""``/users`` of the node-local API: the host's human accounts, made and re-keyed with useradd and chpasswd.

The work itself is in host/useraccounts (what is checked, how commands run,
how a failed create is undone); it runs in the node's root (host/hostroot).
Changes are serialised per agent; passwords are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from vapor.agentapi.errors import INVALID_INPUT
from vapor.agentapi.userspec import CreateUserRequest, ResetPasswordRequest, check_name

from .context import CALLER, NodeContext, host_root_of, read_body
from .envelope import NodeAPIError, ok

log = logging.getLogger("vapor.agent.users")


def _username(request: web.Request) -> str:
    name = request.match_info["username"]
    try:
        return check_name(name)
    except ValueError as exc:
        raise NodeAPIError(400, INVALID_INPUT, str(exc)) from None


def routes(node: NodeContext) -> list[web.RouteDef]:
    """List, create, reset a password."""
    lock = asyncio.Lock()
    root = host_root_of(node)

    def who(request: web.Request) -> dict[str, Any]:
        return {"caller": request.get(CALLER), "requested_by": request.query.get("by")}

    async def get_users(_request: web.Request) -> web.Response:
        return ok({"users": await root.call("list_users")})

    async def post_user(request: web.Request) -> web.Response:
        body = await read_body(request, CreateUserRequest)
        async with lock:
            user = await root.call("create_user", body.model_dump())
        log.info("user created", extra={"user": body.username, "groups": user["groups"], **who(request)})
        return ok({"user": user}, status=201)

    async def post_reset(request: web.Request) -> web.Response:
        name = _username(request)
        body = await read_body(request, ResetPasswordRequest)
        async with lock:
            await root.call("reset_password", name, body.model_dump())
        log.info("password reset", extra={"user": name, **who(request)})
        return ok({"username": name, "message": f"password of {name!r} reset"})

    return [
        web.get("/users", get_users),
        web.post("/users", post_user),
        web.post("/users/{username}/reset-password", post_reset),
    ]
