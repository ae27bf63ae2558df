"""What every WebSocket of the gateway shares: the per-client count, the auth message, refusals, token expiry.

A socket route runs its session through :func:`serve_socket`, which accepts
the socket, counts it against MAX_SOCKETS of its client (the 11th is
RATE_LIMITED, closed with 4429) and turns an APIError into the contract's
``{type: 'error', error: {code, message}}`` followed by a close (CLOSE_CODES,
else 1008). Inside, :func:`authenticate` reads the ``auth`` message (the
claims of its token, or UNAUTHORIZED), :func:`read_message` the next JSON
message of a type, and :func:`until_expiry` runs the relay until the token
expires (then UNAUTHORIZED, 4401). The routes: .ws (metrics, logs,
terminal) and .consoles (a VM's serial console and display).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from quart import current_app, websocket

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, PERMISSION_DENIED, RATE_LIMITED, UNAUTHORIZED

from ._clients import client_of
from ._errors import APIError
from ._state import gateway
from ._tokens import Claims, InvalidToken

MAX_SOCKETS = 10  # concurrent WebSockets per client address (the contract)
AUTH_SECONDS = 10.0  # how long the gateway waits for the auth and subscribe messages
CLOSE_CODES = {UNAUTHORIZED: 4401, PERMISSION_DENIED: 4403, CONFLICT: 4409, RATE_LIMITED: 4429}
EXTENSION = "vapor_ws_sockets"


def open_sockets() -> Counter[str]:
    """The app's count of open WebSockets by client."""
    found: Counter[str] | None = current_app.extensions.get(EXTENSION)
    if found is None:
        found = current_app.extensions[EXTENSION] = Counter()
    return found


async def refuse(code: str, message: str) -> None:
    """Send the contract's error message, then close with the code's close code (CLOSE_CODES, else 1008)."""
    await websocket.send(orjson.dumps({"type": "error", "error": {"code": code, "message": message}}).decode())
    await websocket.close(CLOSE_CODES.get(code, 1008), message[:120])


async def read_message(kind: str) -> tuple[dict[str, Any], str]:
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


async def authenticate() -> Claims:
    """The claims of the auth message's token; UNAUTHORIZED otherwise."""
    try:
        body, _ = await read_message("auth")
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


async def until_expiry(claims: Claims, relay: Coroutine[Any, Any, Any]) -> None:
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


async def serve_socket(session: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Accept the current websocket, count it against MAX_SOCKETS of its client, and run ``session(client)``.

    An APIError out of ``session`` is refused (an error message, then the close code of CLOSE_CODES).
    """
    client = client_of(websocket.remote_addr, websocket.headers)
    sockets = open_sockets()
    await websocket.accept()
    if sockets[client] >= MAX_SOCKETS:
        await refuse(RATE_LIMITED, f"too many WebSockets: at most {MAX_SOCKETS} open at once per client")
        return
    sockets[client] += 1
    try:
        await session(client)
    except APIError as exc:
        await refuse(exc.code, exc.message)
    finally:
        sockets[client] -= 1
        if sockets[client] <= 0:
            del sockets[client]
        with contextlib.suppress(Exception):
            await websocket.close(1000)
