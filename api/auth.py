"""/api/v1/auth: log in with a Linux user's password, and renew tokens."""

from __future__ import annotations

import logging
import time

from quart import Blueprint
from quart_schema import document_response, tag, validate_request, validate_response

from vapor.agentapi.errors import UNAUTHORIZED
from vapor.redact import name_mark

from ._accounts import Account, AccountRefused, lookup, verify
from ._agentdocs import AGENT_FAILURES, documents_failures
from ._errors import APIError
from ._refresh import RefreshRefused
from ._schema import Failure, LoginRequest, LogoutResult, RefreshRequest, Success, TokenPair, UserInfo
from ._state import gateway

log = logging.getLogger("vapor.gateway.auth")

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1/auth")

BAD_CREDENTIALS = "invalid username or password"
# With VAPOR_AUTH_HOSTS a login host's agent is asked: its failures, without a ?host= of the caller's.
documents_login_host_errors = documents_failures(AGENT_FAILURES, host_scoped=False)


def _pair(user: Account, refresh_token: str, refresh_expires_in: int) -> TokenPair:
    state = gateway()
    assert state.signer is not None
    token, expires_at = state.signer.issue(user.username, user.role)
    return TokenPair(
        token=token,
        expires_at=expires_at,
        expires_in=max(0, expires_at - int(time.time())),
        refresh_token=refresh_token,
        refresh_expires_in=refresh_expires_in,
        user=UserInfo(username=user.username, role=user.role, groups=list(user.groups)),
    )


@blueprint.post("/login")
@tag(["auth"])
@validate_request(LoginRequest)
@validate_response(Success[TokenPair])
@document_response(Failure, 401)
@document_response(Failure, 429)
@documents_login_host_errors
async def login(data: LoginRequest) -> Success[TokenPair]:
    """Log in as a Linux user of the host.

    PAM checks the password on the host where the users live: this
    machine, or the first login host of VAPOR_AUTH_HOSTS that answers,
    through its agent.
    Members of the admin groups (sudo and wheel by default) get role admin
    and may change resources; every other user gets role viewer and may only
    read. Returns a bearer token and a single-use refresh token.

    A refused password is answered after a delay (2 s), one check of an
    account at a time; after three refusals in a row the account is not
    checked for a while, doubling up to a minute, even with the right
    password: 429 RATE_LIMITED says how long. Other accounts are not held.
    """
    state = gateway()
    user = await verify(data.username, data.password)
    if user is None:
        # never the name in clear: it is often a password typed into the wrong field
        log.info("login refused for user %s", name_mark(data.username))
        raise APIError(401, UNAUTHORIZED, BAD_CREDENTIALS)
    refresh_token = await state.refresh.start_family(user.username)
    log.info("user %r logged in with role %s", user.username, user.role)
    return Success[TokenPair](data=_pair(user, refresh_token, state.refresh.first_lifetime))


@blueprint.post("/refresh")
@tag(["auth"])
@validate_request(RefreshRequest)
@validate_response(Success[TokenPair])
@document_response(Failure, 401)
@documents_login_host_errors
async def refresh(data: RefreshRequest) -> Success[TokenPair]:
    """Trade a refresh token for a new token pair.

    Each refresh token works once. Presenting one that was already used
    revokes every token of that login, the newest included. The login host
    is asked again: the role follows the user's current groups, and a user
    who was removed, whose password was locked, whose account expired or
    who must change the password gets 401 with the reason, and the refresh
    tokens of all of that user's logins are revoked (as they are when an
    admin resets the user's password). However often it is renewed, a
    login's refresh token ends VAPOR_REFRESH_FAMILY_LIFETIME (30 days) after
    the login.
    """
    state = gateway()
    try:
        rotated = await state.refresh.rotate(data.refresh_token)
    except RefreshRefused as exc:
        raise APIError(401, UNAUTHORIZED, str(exc)) from None
    try:
        user = await lookup(rotated.username)  # the role follows group changes
    except AccountRefused as exc:
        await state.refresh.revoke_user(rotated.username)  # every login of the account, not only this one
        log.info("refresh refused: %s", exc)
        raise APIError(401, UNAUTHORIZED, str(exc)) from None
    return Success[TokenPair](data=_pair(user, rotated.refresh_token, rotated.expires_in))


@blueprint.post("/logout")
@tag(["auth"])
@validate_request(RefreshRequest)
@validate_response(Success[LogoutResult])
@document_response(Failure, 401)
async def logout(data: RefreshRequest) -> Success[LogoutResult]:
    """End a login: its refresh token, and every later one of the same login, can no longer be traded.

    Takes the login's current refresh token (no bearer token is needed: an
    expired login can still be ended). Bearer tokens already issued stay
    valid until they expire (VAPOR_TOKEN_LIFETIME); a client forgets them.
    401 when the refresh token is malformed or unknown.
    """
    if not await gateway().refresh.revoke_known(data.refresh_token):
        raise APIError(401, UNAUTHORIZED, "the refresh token is unknown or has expired; the login has ended already")
    return Success[LogoutResult](data=LogoutResult(message="logged out: the login's refresh token is revoked"))
