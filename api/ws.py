"""The contract's WebSockets: /ws/metrics, /ws/logs and /ws/terminal, relayed to the agent of ``?host=``.

Protocol (JSON text messages):

1. the client sends ``{type: 'auth', payload: {token: '<jwt>'}}`` first (within
   _sockets.AUTH_SECONDS); the gateway answers ``{type: 'auth', status: 'ok', user}``;
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
with code 1008 (4401 for UNAUTHORIZED, 4403 for PERMISSION_DENIED, 4409 for
CONFLICT, 4429 for RATE_LIMITED): a first message
that is not a valid auth message is UNAUTHORIZED; an 11th concurrent socket
from one client address is RATE_LIMITED (MAX_SOCKETS per client); an unknown
host is NOT_FOUND; an unreachable agent AGENT_UNREACHABLE / AGENT_UNAVAILABLE.
What every socket shares (the count, auth, refusals, expiry) is in _sockets;
a VM's serial console and display are in .consoles.
"""

from __future__ import annotations

import logging

import orjson
from quart import Blueprint, websocket

from vapor.agentapi.errors import PERMISSION_DENIED, UNAUTHORIZED

from ._accounts import AccountRefused, lookup
from ._agents import relay_websocket
from ._errors import APIError
from ._hostscope import scoped_host
from ._logscope import check_log_access
from ._sockets import authenticate, read_message, serve_socket, until_expiry
from ._state import gateway

log = logging.getLogger("vapor.gateway.ws")

blueprint = Blueprint("ws", __name__)


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


async def _relayed(path: str, client: str) -> None:
    claims = await authenticate()
    username = claims.username
    params: dict[str, str] | None = None
    if path == "/ws/terminal":
        await _check_terminal_user(username)
        # the agent runs the shell as this user and hangs it up when the token expires
        params = {"user": username, "expires": str(claims.expires_at)}
    await websocket.send(orjson.dumps({"type": "auth", "status": "ok", "user": username}).decode())
    _, subscribe = await read_message("subscribe")
    if path == "/ws/logs":
        check_log_access(username, claims.role, _subscribed_unit(subscribe))
    host = scoped_host()
    log.info("websocket relayed", extra={"path": path, "user": username, "host": host.metadata.name, "client": client})
    await until_expiry(claims, relay_websocket(path, host=host, params=params, first=[subscribe]))


async def _serve(path: str) -> None:
    await serve_socket(lambda client: _relayed(path, client))


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
