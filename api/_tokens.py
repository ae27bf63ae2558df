"""Bearer tokens: JWTs (HS256) signed with a key every gateway replica reads from one Secret.

The key Secret is created on the first start; when two replicas start at once
both try, the API server lets one create win, and the other reads the winner's key.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

import jwt
from kubernetes.aio.client.exceptions import ApiException

from vapor.kube import Kube

from ._schema import Role

log = logging.getLogger("vapor.gateway.tokens")

KEY_FIELD = "hs256-key"
ISSUER = "vapor-gateway"
ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The bearer token is malformed, forged or expired (the message says which)."""


@dataclass(frozen=True)
class Claims:
    """What a valid token says."""

    username: str
    role: Role
    expires_at: int


async def ensure_namespace(kube: Kube, namespace: str) -> None:
    """Create the namespace if it does not exist (a replica racing us to it is fine)."""
    try:
        await kube.core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
    except ApiException as exc:
        if exc.status not in (409, 403):  # exists, or not ours to create: the Secret calls will tell
            raise


async def load_signing_key(kube: Kube, namespace: str, name: str) -> bytes:
    """The shared signing key, generated on first start."""
    await ensure_namespace(kube, namespace)
    for _ in range(5):
        try:
            secret = await kube.core.read_namespaced_secret(name, namespace)
            return base64.b64decode((secret.data or {})[KEY_FIELD])
        except ApiException as exc:
            if exc.status != 404:
                raise
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "vapor-gateway"},
            },
            "type": "Opaque",
            "data": {KEY_FIELD: base64.b64encode(secrets.token_bytes(64)).decode()},
        }
        try:
            await kube.core.create_namespaced_secret(namespace, cast(Any, body))
            log.info("generated the token signing key in Secret %s/%s", namespace, name)
        except ApiException as exc:
            if exc.status != 409:  # another replica created it first: read theirs
                raise
    raise RuntimeError(f"could not read or create the signing key Secret {namespace}/{name}")


class TokenSigner:
    """Issues and checks access tokens."""

    def __init__(self, key: bytes, lifetime: int, *, cache_size: int = 4096) -> None:
        self._key = key
        self.lifetime = lifetime
        # Tokens already verified, until they expire: a client sends the same token on every
        # request, and decoding it again costs more than answering from the cache.
        self._verified: dict[str, Claims] = {}
        self._cache_size = cache_size

    def issue(self, username: str, role: Role) -> tuple[str, int]:
        """A new token for the user, and when it expires (Unix time)."""
        now = int(time.time())
        expires_at = now + self.lifetime
        claims: dict[str, Any] = {
            "sub": username,
            "role": role,
            "iat": now,
            "exp": expires_at,
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires_at

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; InvalidToken otherwise."""
        known = self._verified.get(token)
        if known is not None and known.expires_at > time.time():
            return known
        claims = self._decode(token)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired; log in again or use your refresh token") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature is not valid") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is malformed") from None
        role = claims.get("role")
        if role not in ("admin", "viewer") or not isinstance(claims["sub"], str):
            raise InvalidToken("the token is malformed")
        return Claims(username=claims["sub"], role=role, expires_at=int(claims["exp"]))
