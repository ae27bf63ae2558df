"""Who may call the node API: a bearer token the Kubernetes API server accepts, of the one allowed identity.

Every request needs ``Authorization: Bearer <token>``. The token is checked
with a TokenReview for the audience ``vapor-agent`` (answers cached for
``CACHE_SECONDS``): a token the API server would accept for itself is
refused here, and the gateway's agent token is refused by the API server.
Only the identity of ``--api-allowed-user`` (default the gateway's ServiceAccount,
``system:serviceaccount:vapor-system:vapor-gateway``) may call: no token or a
token the API server does not accept is 401 UNAUTHORIZED, any other identity
403 PERMISSION_DENIED, an API server that cannot say 503 AUTH_UNAVAILABLE.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from kubernetes.aio import client

from vapor.agentapi.errors import AUTH_UNAVAILABLE, PERMISSION_DENIED, UNAUTHORIZED
from vapor.kube import Kube, KubeError
from vapor.kube._client import call

from .context import CALLER
from .envelope import NodeAPIError

log = logging.getLogger("vapor.agent.nodeapi")

CACHE_SECONDS = 10.0  # how long a TokenReview answer is trusted
CACHE_MAX = 1024


@dataclass(frozen=True)
class Review:
    """The API server's answer about one token."""

    authenticated: bool
    username: str = ""
    error: str = ""


class TokenReviewer:
    """Checks bearer tokens with TokenReview, remembering answers for a few seconds."""

    def __init__(self, kube: Kube, ttl: float = CACHE_SECONDS, audiences: list[str] | None = None) -> None:
        self.api = client.AuthenticationV1Api(kube.api)
        self.ttl = ttl
        self.audiences = audiences
        self._cache: dict[bytes, tuple[float, Review]] = {}
        self.reviews = 0  # TokenReviews sent (for tests and benchmarks)

    async def review(self, token: str) -> Review:
        """Whether the API server accepts ``token``, and for whom; KubeError when it cannot say."""
        key = hashlib.sha256(token.encode()).digest()  # never keep the token itself
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=self.audiences))
        answer = await call(self.api.create_token_review(body))
        self.reviews += 1
        status = answer.status
        # With audiences asked for, the API server authenticates a token only for one of them, and says which.
        meant_for_us = self.audiences is None or bool(set(self.audiences) & set((status and status.audiences) or []))
        if status is not None and status.authenticated and status.user is not None and meant_for_us:
            review = Review(True, status.user.username or "")
        else:
            review = Review(False, error=(status.error if status is not None else "") or "")
        if len(self._cache) >= CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
        self._cache[key] = (now + self.ttl, review)
        return review


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not token.strip():
        raise NodeAPIError(401, UNAUTHORIZED, "this API needs the header Authorization: Bearer <token>")
    return token.strip()


def auth_middleware(reviewer: TokenReviewer, allowed_user: str) -> Any:
    """The middleware that lets only ``allowed_user`` through (its name is kept in ``request[CALLER]``)."""

    @web.middleware
    async def authenticate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        token = _bearer(request)
        try:
            review = await reviewer.review(token)
        except (KubeError, OSError, TimeoutError) as exc:
            log.warning("could not review a token", extra={"error": str(exc)})
            raise NodeAPIError(503, AUTH_UNAVAILABLE, "the Kubernetes API could not check the token; retry") from None
        if not review.authenticated:
            log.info("refused a token", extra={"peer": request.remote, "path": request.path, "reason": review.error})
            raise NodeAPIError(401, UNAUTHORIZED, "the token was not accepted by the Kubernetes API")
        if review.username != allowed_user:
            log.info("refused a caller", extra={"peer": request.remote, "path": request.path, "user": review.username})
            raise NodeAPIError(403, PERMISSION_DENIED, f"{review.username} may not call this node's API")
        request[CALLER] = review.username
        return await handler(request)

    return authenticate
