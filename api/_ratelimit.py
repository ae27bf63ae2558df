"""The contract's rate limit: at most RATE_LIMIT requests per minute from one client address.

The client address is the socket's peer, or what a trusted proxy forwarded (_clients).

Logins have a budget of their own: LOGIN_RATE_LIMIT attempts a minute for
each username from one client address, and they do not count against the
client's general budget. So a client looping on a login (a script with a
wrong password, a guesser) uses up only that username's attempts, and the
users behind the same address (one proxy, one NAT) still log in and work.

A fixed one-minute window per key, in memory: each replica counts on its
own, so behind N replicas a client gets up to N times the limit. 0 turns a
limit off.
"""

from __future__ import annotations

import time

from quart import Quart, Response, request

from vapor.agentapi.errors import RATE_LIMITED

from ._clients import client_of
from ._errors import APIError, error_response

WINDOW = 60.0
LOGIN_PATH = "/api/v1/auth/login"
MAX_USERNAME_KEY = 64  # characters of a username kept in its budget's key (the login checks the whole name)


class RateLimiter:
    """Counts requests per key (a client address, or a client and username) in one-minute windows."""

    def __init__(self, limit: int, *, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, client: str, now: float | None = None) -> float:
        """Count one request; 0 when allowed, else the seconds until the client may try again."""
        now = time.monotonic() if now is None else now
        start, count = self._windows.get(client, (now, 0))
        if now - start >= WINDOW:
            start, count = now, 0
        if count >= self.limit:
            return WINDOW - (now - start)
        if len(self._windows) >= self.max_clients:  # forget finished windows rather than grow without end
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW}
        self._windows[client] = (start, count + 1)
        return 0.0


def _refusal(wait: float, message: str) -> Response:
    response = error_response(APIError(429, RATE_LIMITED, f"{message}; try again in {wait:.0f} s"))
    response.headers["Retry-After"] = str(max(1, round(wait)))
    return response


async def _login_name() -> str:
    """The username a login request names ("" when its body says none); the route checks the body itself."""
    body = await request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return name[:MAX_USERNAME_KEY] if isinstance(name, str) else ""


def install(app: Quart, limit: int, login_limit: int) -> None:
    """Refuse, with 429 RATE_LIMITED, requests to /api/ over the limits a minute.

    ``limit`` counts every request but logins per client address, ``login_limit``
    logins per username and client address.
    """
    limiter = RateLimiter(limit) if limit > 0 else None
    logins = RateLimiter(login_limit) if login_limit > 0 else None
    if limiter is None and logins is None:
        return

    @app.before_request
    async def rate_limit() -> Response | None:
        if not request.path.startswith("/api/"):
            return None
        client = client_of(request.remote_addr, request.headers)
        if request.path == LOGIN_PATH and request.method == "POST":
            if logins is None:
                return None
            name = await _login_name()
            wait = logins.hit(f"{client} {name}")
            message = f"too many logins as {name!r}: at most {login_limit} a minute" if wait else ""
        elif limiter is not None:
            wait = limiter.hit(client)
            message = f"too many requests: at most {limit} a minute" if wait else ""
        else:
            return None
        return _refusal(wait, message) if wait else None
