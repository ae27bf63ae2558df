"""``/users`` of the node-local API: the host's human accounts, made and re-keyed with useradd and chpasswd.

Human accounts are those with a uid of 1000 or more, except ``nobody``;
root and the system's own accounts are never changed here. Requests are
validated again with vapor.userspec (the gateway already did), then against
the host: supplementary groups must exist (INVALID_INPUT naming the group),
a new name must be free (409 ALREADY_EXISTS), a reset needs an existing human
account (404 NOT_FOUND; root and system accounts are INVALID_INPUT).

Commands run as argument lists, without a shell, names after ``--``;
passwords go to chpasswd on its standard input only, and are never logged.
A user whose password cannot be set is removed again, so a failed create
leaves nothing behind. Changes are serialised per agent.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import pwd
import subprocess
from typing import Any

from aiohttp import web

from vapor.userspec import FIRST_HUMAN_UID, NOBODY, CreateUserRequest, ResetPasswordRequest, check_name

from ._nodeapi import CALLER, INTERNAL_ERROR, INVALID_INPUT, NOT_FOUND, NodeAPIError, NodeContext, ok, read_body

log = logging.getLogger("vapor.agent.users")

ALREADY_EXISTS = "ALREADY_EXISTS"
SHELL = "/bin/bash"
COMMAND_TIMEOUT = 60.0
USERADD_NAME_IN_USE = 9  # useradd's exit status when the name is taken


def _is_human(entry: pwd.struct_passwd) -> bool:
    return entry.pw_uid >= FIRST_HUMAN_UID and entry.pw_name != NOBODY


def _describe(entry: pwd.struct_passwd, members: dict[str, list[str]]) -> dict[str, Any]:
    try:
        primary = [grp.getgrgid(entry.pw_gid).gr_name]
    except KeyError:
        primary = []
    groups = primary + [g for g in members.get(entry.pw_name, []) if g not in primary]
    return {
        "username": entry.pw_name,
        "uid": str(entry.pw_uid),
        "gid": str(entry.pw_gid),
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
        "groups": groups,
    }


def _memberships() -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for group in grp.getgrall():
        for name in group.gr_mem:
            members.setdefault(name, []).append(group.gr_name)
    return members


def list_users() -> list[dict[str, Any]]:
    """Every human account of the host, by uid."""
    members = _memberships()
    return [_describe(e, members) for e in sorted(pwd.getpwall(), key=lambda e: e.pw_uid) if _is_human(e)]


def _one(name: str) -> dict[str, Any]:
    return _describe(pwd.getpwnam(name), _memberships())


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, text=True, capture_output=True, check=False, timeout=COMMAND_TIMEOUT, close_fds=True
    )


def _set_password(name: str, password: str) -> None:
    done = _run(["chpasswd"], stdin=f"{name}:{password}\n")
    if done.returncode != 0:
        reason = done.stderr.strip().replace(password, "***")[:300]
        raise NodeAPIError(500, INTERNAL_ERROR, f"chpasswd could not set the password of {name!r}", reason)


def create_user(body: CreateUserRequest) -> dict[str, Any]:
    """useradd, then chpasswd; the account is removed again if its password cannot be set."""
    name = body.username
    groups = body.group_list()
    for group in groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise NodeAPIError(400, INVALID_INPUT, f"group {group!r} does not exist on this host") from None
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        raise NodeAPIError(409, ALREADY_EXISTS, f"user {name!r} already exists")
    args = ["useradd", "-m", "-s", SHELL]
    if groups:
        args += ["-G", ",".join(groups)]
    done = _run([*args, "--", name])
    if done.returncode == USERADD_NAME_IN_USE:
        raise NodeAPIError(409, ALREADY_EXISTS, f"a user or group named {name!r} already exists", done.stderr.strip())
    if done.returncode != 0:
        raise NodeAPIError(500, INTERNAL_ERROR, f"useradd could not create {name!r}", done.stderr.strip()[:300])
    try:
        _set_password(name, body.password)
    except BaseException:
        _run(["userdel", "-r", "--", name])
        raise
    return _one(name)


def reset_password(name: str, body: ResetPasswordRequest) -> None:
    """Set the password of an existing human account with chpasswd."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NodeAPIError(404, NOT_FOUND, f"user {name!r} does not exist on this host") from None
    if not _is_human(entry):
        raise NodeAPIError(
            400,
            INVALID_INPUT,
            f"user {name!r} is root or a system account (uid {entry.pw_uid}); only accounts with a uid of "
            f"{FIRST_HUMAN_UID} or more are managed here",
        )
    _set_password(name, body.password)


def _username(request: web.Request) -> str:
    name = request.match_info["username"]
    try:
        return check_name(name)
    except ValueError as exc:
        raise NodeAPIError(400, INVALID_INPUT, str(exc)) from None


def routes(node: NodeContext) -> list[web.RouteDef]:
    """List, create, reset a password."""
    lock = asyncio.Lock()

    def who(request: web.Request) -> dict[str, Any]:
        return {"caller": request.get(CALLER), "requested_by": request.query.get("by")}

    async def get_users(_request: web.Request) -> web.Response:
        return ok({"users": await asyncio.to_thread(list_users)})

    async def post_user(request: web.Request) -> web.Response:
        body = await read_body(request, CreateUserRequest)
        async with lock:
            user = await asyncio.to_thread(create_user, body)
        log.info("user created", extra={"user": body.username, "groups": user["groups"], **who(request)})
        return ok({"user": user}, status=201)

    async def post_reset(request: web.Request) -> web.Response:
        name = _username(request)
        body = await read_body(request, ResetPasswordRequest)
        async with lock:
            await asyncio.to_thread(reset_password, name, body)
        log.info("password reset", extra={"user": name, **who(request)})
        return ok({"username": name, "message": f"password of {name!r} reset"})

    return [
        web.get("/users", get_users),
        web.post("/users", post_user),
        web.post("/users/{username}/reset-password", post_reset),
    ]
