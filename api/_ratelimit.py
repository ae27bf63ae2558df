"""The contract's rate limit: at most RATE_LIMIT requests per minute from one client address.

The client address is the socket's peer, or what a trusted proxy forwarded (_clients).

A fixed one-minute window per address, in memory: each replica counts on its
own, so behind N replicas a client gets up to N times the limit. 0 turns it off.
"""

from __future__ import annotations

import time

from quart import Quart, Response, request

from ._clients import client_of
from ._errors import RATE_LIMITED, APIError, error_response

WINDOW = 60.0


class RateLimiter:
    """Counts requests per client address in one-minute windows."""

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


def install(app: Quart, limit: int) -> None:
    """Refuse requests to /api/ over ``limit`` per minute per client address with 429 RATE_LIMITED."""
    if limit <= 0:
        return
    limiter = RateLimiter(limit)

    @app.before_request
    async def rate_limit() -> Response | None:
        if not request.path.startswith("/api/"):
            return None
        wait = limiter.hit(client_of(request.remote_addr, request.headers))
        if not wait:
            return None
        response = error_response(
            APIError(429, RATE_LIMITED, f"too many requests: at most {limit} a minute; try again in {wait:.0f} s")
        )
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
