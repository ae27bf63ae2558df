"""A VM's console WebSockets (/ws/vms/{id}/console and /vnc): the auth and subscribe messages, and why one ended.

Protocol: ``{type: 'auth', payload: {token}}`` answered ``{type: 'auth',
status: 'ok', user}``; then ``{type: 'subscribe', payload: {force, cols,
rows}}``; then binary frames carry the raw bytes both ways, and text frames
JSON control messages (``{type: 'resize', cols, rows}`` from us,
``{type: 'error', error: {code, message}}`` from the server before it closes:
4409 another session or a takeover, 4401 the token expired, 4403 denied).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .client import Client
from .errors import CLIError
from .names import VMRef

RENEW = "the session lasts as long as the token it opened with; open it again (vaporctl renews the token)"
CLOSE_MEANING = {
    4401: f"the token expired: {RENEW}",
    4403: "permission denied",
    4409: "another session took the console over, or holds it (use --force to take it over)",
    4429: "too many WebSockets are open from this machine",
}


def open_session(api: Client, vm: VMRef, kind: str, *, force: bool, cols: int = 80, rows: int = 24) -> ClientConnection:
    """A WebSocket to the VM's ``kind`` (console or vnc), authenticated and subscribed."""
    query = urlencode({"namespace": vm.namespace})
    url = api.ws_url(f"/ws/vms/{quote(vm.ident, safe='')}/{kind}?{query}")
    token = api.token
    try:
        ws = connect(url, open_timeout=15, max_size=None, compression=None, proxy=None)
    except InvalidStatus as exc:
        raise CLIError(f"the server refused the {kind} WebSocket: HTTP {exc.response.status_code}") from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise CLIError(f"cannot open the {kind} WebSocket at {api.server}: {exc}") from None
    try:
        ws.send(json.dumps({"type": "auth", "payload": {"token": token}}))
        answer = control(ws.recv(timeout=30))
        if answer.get("type") != "auth" or answer.get("status") != "ok":
            raise refusal(answer, None)
        ws.send(json.dumps({"type": "subscribe", "payload": {"force": force, "cols": cols, "rows": rows}}))
    except ConnectionClosed as exc:
        ws.close()
        raise refusal(None, exc) from None
    except BaseException:
        ws.close()
        raise
    return ws


def control(message: str | bytes) -> dict[str, Any]:
    """A text frame's JSON object (empty when it is not one)."""
    if isinstance(message, bytes):
        return {}
    try:
        body = json.loads(message)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refusal(error: dict[str, Any] | None, closed: ConnectionClosed | None) -> CLIError:
    """Why the server ended (or refused) a session: its error message, else what the close code means."""
    code = closed.rcvd.code if closed is not None and closed.rcvd is not None else None
    body = (error or {}).get("error")
    if isinstance(body, dict) and body.get("message"):
        text = str(body["message"])
        if code == 4401 or body.get("code") == "UNAUTHORIZED":
            text += f"; {RENEW}"
        return CLIError(text)
    if code in CLOSE_MEANING:
        return CLIError(CLOSE_MEANING[code])
    reason = closed.rcvd.reason if closed is not None and closed.rcvd is not None else ""
    return CLIError(f"the server closed the session{f' ({code})' if code else ''}{f': {reason}' if reason else ''}")
