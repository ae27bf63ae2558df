"""Refresh tokens with rotation, kept in the Kubernetes API so that every replica agrees.

A login starts a *family*: one Secret holding the user, the family's expiry and
only the SHA-256 of the family's current refresh token. Each refresh replaces
that hash, writing with the Secret's resourceVersion as a precondition, so two
replicas cannot both accept the same token. A token that is not the current
one (it was used already) revokes the whole family: whoever holds the newest
token of that family must log in again.

A family also ends, however often it is used, ``family_lifetime`` seconds
after its login (the Secret's creationTimestamp; default 30 days), and all
of a user's families are revoked when the user's password is reset or a
refresh finds the account locked (``revoke_user``): a stolen refresh token
does not outlive either.

Token format: ``<family id (32 hex)>.<secret>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from kubernetes.aio.client.exceptions import ApiException

from vapor.kube import Kube

log = logging.getLogger("vapor.gateway.refresh")

SECRET_PREFIX = "vapor-refresh-"
FAMILY_LABEL = "vapor.io/refresh-family"
MERGE_PATCH = "application/merge-patch+json"
_TOKEN_RE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{20,100})$")


class RefreshRefused(Exception):
    """The refresh token cannot be traded (the message says why)."""


@dataclass(frozen=True)
class Rotated:
    """The result of a successful refresh."""

    username: str
    refresh_token: str
    expires_in: int  # seconds the new refresh token is valid


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(data: dict[str, str] | None, key: str) -> str:
    return base64.b64decode((data or {}).get(key, "")).decode()


class RefreshStore:
    """Families of refresh tokens, one Secret each."""

    def __init__(self, kube: Kube, namespace: str, lifetime: int, family_lifetime: int) -> None:
        self.kube = kube
        self.namespace = namespace
        self.lifetime = lifetime
        self.family_lifetime = family_lifetime

    @property
    def first_lifetime(self) -> int:
        """Seconds the refresh token of a new login is valid."""
        return min(self.lifetime, self.family_lifetime)

    def _family_end(self, secret: Any) -> float:
        """When the family of this Secret ends, used or not (Unix time)."""
        created = secret.metadata.creation_timestamp if secret.metadata else None
        return (created.timestamp() if created else time.time()) + self.family_lifetime

    async def start_family(self, username: str) -> str:
        """A new family for a login; returns its first refresh token."""
        family = uuid.uuid4().hex
        token = f"{family}.{secrets.token_urlsafe(32)}"
        body = {
            "metadata": {
                "name": SECRET_PREFIX + family,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "vapor-gateway", FAMILY_LABEL: family},
            },
            "type": "Opaque",
            "data": {
                "username": _b64(username),
                "hash": _b64(_hash(token)),
                "expires": _b64(str(int(time.time()) + self.first_lifetime)),
                "revoked": _b64("false"),
            },
        }
        await self.kube.core.create_namespaced_secret(self.namespace, cast(Any, body))
        return token

    async def rotate(self, token: str) -> Rotated:
        """Trade ``token`` for the next one of its family; RefreshRefused when it cannot be."""
        match = _TOKEN_RE.match(token)
        if not match:
            raise RefreshRefused("the refresh token is malformed")
        name = SECRET_PREFIX + match.group(1)
        for _ in range(3):
            try:
                secret = await self.kube.core.read_namespaced_secret(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    raise RefreshRefused("the refresh token is unknown or has expired; log in again") from None
                raise
            data = {k: v if isinstance(v, str) else v.decode() for k, v in (secret.data or {}).items()}
            meta = secret.metadata
            assert meta is not None
            username = _unb64(data, "username")
            if _unb64(data, "revoked") == "true":
                raise RefreshRefused("the refresh token was revoked; log in again")
            if int(_unb64(data, "expires") or 0) < time.time():
                raise RefreshRefused("the refresh token has expired; log in again")
            family_end = self._family_end(secret)
            if family_end <= time.time():
                days = self.family_lifetime / 86400
                raise RefreshRefused(f"the login is older than {days:g} days, the most a login lasts; log in again")
            if not hmac.compare_digest(_unb64(data, "hash"), _hash(token)):
                await self._revoke(name)
                log.warning("refresh token of user %s reused: family %s revoked", username, match.group(1))
                raise RefreshRefused("the refresh token was already used; all tokens of its login are revoked")
            new = f"{match.group(1)}.{secrets.token_urlsafe(32)}"
            expires = int(min(time.time() + self.lifetime, family_end))
            body = {
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "resourceVersion": meta.resource_version,
                    "labels": meta.labels,
                },
                "type": "Opaque",
                "data": {
                    **data,
                    "hash": _b64(_hash(new)),
                    "expires": _b64(str(expires)),
                },
            }
            try:
                await self.kube.core.replace_namespaced_secret(name, self.namespace, cast(Any, body))
            except ApiException as exc:
                if exc.status == 409:  # someone rotated it meanwhile: read again, and see the reuse
                    continue
                raise
            return Rotated(username=username, refresh_token=new, expires_in=max(0, expires - int(time.time())))
        raise RefreshRefused("the refresh token is being used concurrently; log in again")

    async def sweep(self) -> int:
        """Delete the families whose refresh token has expired or whose login is too old; returns how many went."""
        secrets_ = await self.kube.core.list_namespaced_secret(self.namespace, label_selector=FAMILY_LABEL)
        removed = 0
        for secret in secrets_.items:
            data = {k: v if isinstance(v, str) else v.decode() for k, v in (secret.data or {}).items()}
            name = secret.metadata.name if secret.metadata else None
            ended = int(_unb64(data, "expires") or 0) < time.time() or self._family_end(secret) <= time.time()
            if name and ended:
                try:
                    await self.kube.core.delete_namespaced_secret(name, self.namespace)
                    removed += 1
                except ApiException as exc:
                    if exc.status != 404:  # another replica swept it first
                        raise
        return removed

    async def revoke_user(self, username: str) -> int:
        """Revoke every family of ``username`` (a password reset, a locked account); returns how many."""
        families = await self.kube.core.list_namespaced_secret(self.namespace, label_selector=FAMILY_LABEL)
        revoked = 0
        for secret in families.items:
            data = {k: v if isinstance(v, str) else v.decode() for k, v in (secret.data or {}).items()}
            name = secret.metadata.name if secret.metadata else None
            if name and _unb64(data, "username") == username and _unb64(data, "revoked") != "true":
                await self._revoke(name)
                revoked += 1
        if revoked:
            log.info("revoked %d refresh-token families of user %s", revoked, username)
        return revoked

    async def revoke(self, token: str) -> None:
        """Revoke the family of ``token`` (when its user no longer exists, for instance)."""
        match = _TOKEN_RE.match(token)
        if match:
            await self._revoke(SECRET_PREFIX + match.group(1))

    async def revoke_known(self, token: str) -> bool:
        """Revoke the family of ``token`` (a logout); False when the token is malformed or its family is gone."""
        match = _TOKEN_RE.match(token)
        if not match:
            return False
        name = SECRET_PREFIX + match.group(1)
        try:
            await self.kube.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        await self._revoke(name)
        return True

    async def _revoke(self, name: str) -> None:
        try:
            await self.kube.core.patch_namespaced_secret(
                name, self.namespace, cast(Any, {"data": {"revoked": _b64("true")}}), _content_type=MERGE_PATCH
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
