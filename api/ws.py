"""The contract's WebSockets: /ws/metrics, /ws/logs and /ws/terminal, relayed to the agent of ``?host=``.

Protocol (JSON text messages):

1. the client sends ``{type: 'auth', payload: {token: '<jwt>'}}`` first (within
   AUTH_SECONDS); the gateway answers ``{type: 'auth', status: 'ok', user}``;
2. then ``{type: 'subscribe', payload: {...}}``: the gateway forwards it to the
   agent of the host (``?host=`` by id or name, else the default host) and
   relays both ways until either side closes. What the agent streams is
   described in vapor.agent.nodeapi.ws: ``metric`` messages every second,
   ``log`` messages of the journal, ``output``/``exit`` of a PTY shell that
   runs as the logged-in user (``input`` and ``resize`` from the client).

A socket lasts as long as the token of its auth message: when the token
expires the gateway sends UNAUTHORIZED and closes it with 4401 (the client
opens a new one with a fresh token).

Who may: /ws/metrics every logged-in user; /ws/logs admins, and viewers for
one unit of VAPOR_VIEWER_LOG_UNITS (see _logscope); /ws/terminal members of
the admin groups or of VAPOR_TERMINAL_GROUPS, as the login host sees the
account when the socket opens (a locked or removed account is refused). The
agent runs the account's own login shell through the node's PAM (account
and session stages) and hangs it up when the token expires or the account
may no longer log in.

Refusals are ``{type: 'error', error: {code, message}}`` followed by a close
with code 1008 (4401 for UNAUTHORIZED, 4403 for PERMISSION_DENIED, 4429 for
RATE_LIMITED): a first message
that is not a valid auth message is UNAUTHORIZED; an 11th concurrent socket
from one client address is RATE_LIMITED (MAX_SOCKETS per client); an unknown
host is NOT_FOUND; an unreachable agent AGENT_UNREACHABLE / AGENT_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import orjson
from quart import Blueprint, current_app, websocket

from vapor.agentapi.errors import INVALID_INPUT, PERMISSION_DENIED, RATE_LIMITED, UNAUTHORIZED

from ._accounts import AccountRefused, lookup
from ._agents import relay_websocket
from ._clients import client_of
from ._errors import APIError
from ._hostscope import scoped_host
from ._logscope import check_log_access
from ._state import gateway
from ._tokens import Claims, InvalidToken

log = logging.getLogger("vapor.gateway.ws")

blueprint = Blueprint("ws", __name__)

MAX_SOCKETS = 10  # concurrent WebSockets per client address (the contract)
AUTH_SECONDS = 10.0  # how long the gateway waits for the auth and subscribe messages
CLOSE_CODES = {UNAUTHORIZED: 4401, PERMISSION_DENIED: 4403, RATE_LIMITED: 4429}
EXTENSION = "vapor_ws_sockets"


def _open_sockets() -> Counter[str]:
    found: Counter[str] | None = current_app.extensions.get(EXTENSION)
    if found is None:
        found = current_app.extensions[EXTENSION] = Counter()
    return found


async def _refuse(code: str, message: str) -> None:
    await websocket.send(orjson.dumps({"type": "error", "error": {"code": code, "message": message}}).decode())
    await websocket.close(CLOSE_CODES.get(code, 1008), message[:120])


async def _message(kind: str) -> tuple[dict[str, Any], str]:
    """The next client message, which must be JSON ``{type: kind, ...}``; its body and raw text."""
    try:
        raw = await asyncio.wait_for(websocket.receive(), AUTH_SECONDS)
    except TimeoutError:
        raise APIError(400, INVALID_INPUT, f"no {kind!r} message within {AUTH_SECONDS:.0f} s") from None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or body.get("type") != kind:
        raise APIError(400, INVALID_INPUT, f"expected a JSON message {{type: {kind!r}}}")
    return body, text


async def _authenticate() -> Claims:
    """The claims of the auth message's token; UNAUTHORIZED otherwise."""
    try:
        body, _ = await _message("auth")
    except APIError as exc:
        raise APIError(401, UNAUTHORIZED, f"authenticate first: {exc.message}") from None
    payload = body.get("payload")
    token = payload.get("token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise APIError(401, UNAUTHORIZED, "the auth message needs payload.token")
    signer = gateway().signer
    assert signer is not None
    try:
        return signer.verify(token)
    except InvalidToken as exc:
        raise APIError(401, UNAUTHORIZED, str(exc)) from None


async def _until_expiry(claims: Claims, relay: Coroutine[Any, Any, None]) -> None:
    """Run the relay until the socket's token expires, then refuse with UNAUTHORIZED (4401)."""
    deadline = asyncio.get_running_loop().time() + (claims.expires_at - time.time())
    expiry = asyncio.timeout_at(deadline)
    try:
        async with expiry:
            await relay
    except TimeoutError:
        if not expiry.expired():
            raise  # the relay's own time-out, not the token's
        raise APIError(401, UNAUTHORIZED, "the token has expired; open a new socket with a fresh token") from None


async def _check_terminal_user(username: str) -> None:
    """A terminal is for admins and the terminal groups, as the login host sees the account now."""
    try:
        account = await lookup(username)  # a locked or removed account is refused here, not only at refresh
    except AccountRefused as exc:
        raise APIError(401, UNAUTHORIZED, str(exc)) from None
    state = gateway()
    if account.role == "admin" or state.terminal_groups.intersection(account.groups):
        return
    groups = ", ".join(sorted(state.admin_groups | state.terminal_groups)) or "(none configured)"
    raise APIError(
        403, PERMISSION_DENIED, f"user {username!r} may not open a terminal: that needs a member of: {groups}"
    )


def _subscribed_unit(subscribe: str) -> str | None:
    """The unit a /ws/logs subscribe message asks for (the agent checks the message's form)."""
    body = orjson.loads(subscribe)
    payload = body.get("payload")
    filters = payload.get("filters") if isinstance(payload, dict) else None
    unit = filters.get("unit") if isinstance(filters, dict) else None
    return unit if isinstance(unit, str) else None


async def _serve(path: str) -> None:
    client = client_of(websocket.remote_addr, websocket.headers)
    sockets = _open_sockets()
    await websocket.accept()
    if sockets[client] >= MAX_SOCKETS:
        await _refuse(RATE_LIMITED, f"too many WebSockets: at most {MAX_SOCKETS} open at once per client")
        return
    sockets[client] += 1
    try:
        claims = await _authenticate()
        username = claims.username
        params: dict[str, str] | None = None
        if path == "/ws/terminal":
            await _check_terminal_user(username)
            # the agent runs the shell as this user and hangs it up when the token expires
            params = {"user": username, "expires": str(claims.expires_at)}
        await websocket.send(orjson.dumps({"type": "auth", "status": "ok", "user": username}).decode())
        _, subscribe = await _message("subscribe")
        if path == "/ws/logs":
            check_log_access(username, claims.role, _subscribed_unit(subscribe))
        host = scoped_host()
        log.info(
            "websocket relayed", extra={"path": path, "user": username, "host": host.metadata.name, "client": client}
        )
        await _until_expiry(claims, relay_websocket(path, host=host, params=params, first=[subscribe]))
    except APIError as exc:
        await _refuse(exc.code, exc.message)
    finally:
        sockets[client] -= 1
        if sockets[client] <= 0:
            del sockets[client]
        with contextlib.suppress(Exception):
            await websocket.close(1000)


@blueprint.websocket("/ws/metrics")
async def ws_metrics() -> None:
    """Live cpu, memory, disk and network metrics of a host, one message per metric every second."""
    await _serve("/ws/metrics")


@blueprint.websocket("/ws/logs")
async def ws_logs() -> None:
    """Live journal entries of a host, filtered by unit and priority (follow: keep streaming)."""
    await _serve("/ws/logs")


@blueprint.websocket("/ws/terminal")
async def ws_terminal() -> None:
    """An interactive PTY shell on the host as the logged-in user (input, output, resize)."""
    await _serve("/ws/terminal")
