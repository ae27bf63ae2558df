"""/api/v1/users: the Linux accounts of a host, listed, created and given new passwords by its agent.

Admin only, reading included (the list shows every account of the host).
Host-scoped (``?host=``, see _hostscope). Bodies are checked here with the
models of vapor.agentapi.userspec and again by the agent, which also checks what only
the host knows (groups exist, the account does or does not). The gateway
logs who asked for what, never the password.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import INVALID_INPUT
from vapor.agentapi.userspec import CreateUserRequest, ResetPasswordRequest, check_name

from ._agentdocs import documents_agent_errors
from ._agents import ask_agent
from ._errors import APIError
from ._guard import current_user, require
from ._hostscope import HostQuery
from ._schema import Failure, Success
from ._state import gateway

log = logging.getLogger("vapor.gateway.users")
blueprint = Blueprint("users", __name__, url_prefix="/api/v1/users")
USER_TIMEOUT = 60.0  # useradd -m copies the skeleton; chpasswd may wait for the shadow lock


class LinuxUser(BaseModel):
    """A human account of the host (uid 1000 or more, ``nobody`` left out)."""

    username: str = Field(examples=["john"])
    uid: str = Field(description="User id, as a string (as the contract shows it).", examples=["1000"])
    gid: str = Field(description="Primary group id, as a string.", examples=["1000"])
    home: str = Field(examples=["/home/john"])
    shell: str = Field(examples=["/bin/bash"])
    groups: list[str] = Field(default_factory=list, description="Primary group first, then supplementary ones.")


class UserList(BaseModel):
    """The host's human accounts, by uid."""

    users: list[LinuxUser]


class CreatedUser(BaseModel):
    """The account as made."""

    user: LinuxUser


class PasswordReset(BaseModel):
    """Whose password was changed."""

    username: str
    message: str


def _username(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise APIError(400, INVALID_INPUT, str(exc)) from None


@blueprint.get("")
@require("admin")
@tag(["users"])
@validate_querystring(HostQuery)
@validate_response(Success[UserList])
@documents_agent_errors
async def list_users(query_args: HostQuery) -> Success[UserList]:
    """Every human account of the host (uid 1000 or more), with home, shell and groups."""
    data = await ask_agent("GET", "/users", host=query_args.host)
    return Success[UserList](data=UserList.model_validate(data))


@blueprint.post("")
@require("admin")
@tag(["users"])
@validate_querystring(HostQuery)
@validate_request(CreateUserRequest)
@validate_response(Success[CreatedUser], 201)
@document_response(Failure, 400)
@document_response(Failure, 409)
@documents_agent_errors
async def create_user(data: CreateUserRequest, query_args: HostQuery) -> tuple[Success[CreatedUser], int]:
    """Create an account with a home directory and /bin/bash, in the given existing groups, with a password."""
    by = current_user().username
    log.info("creating user", extra={"user": data.username, "groups": data.groups, "requested_by": by})
    made = await ask_agent(
        "POST", "/users", host=query_args.host, json=data.model_dump(), params={"by": by}, timeout=USER_TIMEOUT
    )
    return Success[CreatedUser](data=CreatedUser.model_validate(made)), 201


@blueprint.post("/<username>/reset-password")
@require("admin")
@tag(["users"])
@validate_querystring(HostQuery)
@validate_request(ResetPasswordRequest)
@validate_response(Success[PasswordReset])
@document_response(Failure, 400)
@document_response(Failure, 404)
@documents_agent_errors
async def reset_password(username: str, data: ResetPasswordRequest, query_args: HostQuery) -> Success[PasswordReset]:
    """Set a new password for an existing account (never root or a system account).

    Every refresh token of the account's logins is revoked: its sessions end
    when their bearer tokens expire.
    """
    name = _username(username)
    by = current_user().username
    log.info("resetting password", extra={"user": name, "requested_by": by})
    done = await ask_agent(
        "POST",
        f"/users/{name}/reset-password",
        host=query_args.host,
        json=data.model_dump(),
        params={"by": by},
        timeout=USER_TIMEOUT,
    )
    # Whoever holds one of the user's refresh tokens (a stolen one included) must log in with the new password.
    await gateway().refresh.revoke_user(name)
    return Success[PasswordReset](data=PasswordReset.model_validate(done))
