"""The gateway acts on Kubernetes as the logged-in user, so that Kubernetes RBAC decides what a user may do.

A REST user ``alice`` with role admin is, to the API server, the user
``vapor:alice`` in the group ``vapor:admins`` (a viewer: ``vapor:viewers``);
the prefix is ``VAPOR_IMPERSONATION_PREFIX``. The chart binds those groups to
ClusterRoles in an allow-listed set of namespaces, and an administrator may
bind more to a user or a group (``kubectl create rolebinding ... --user
vapor:alice``). The gateway's own ServiceAccount keeps only what the gateway
itself needs, plus the right to impersonate.

One connection (pool) per identity, kept while it is used and closed after
``IDLE_SECONDS`` without a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from vapor.kube import Kube

IDLE_SECONDS = 300.0


def identity(prefix: str, username: str, role: str) -> tuple[str, tuple[str, ...]]:
    """The Kubernetes user and groups a REST user acts as."""
    return f"{prefix}{username}", (f"{prefix}{role}s",)


class UserConnections:
    """Impersonating connections to the API server, one per identity, closed when idle."""

    def __init__(self, kube: Kube, prefix: str) -> None:
        self.kube = kube
        self.prefix = prefix
        self._open: dict[tuple[str, tuple[str, ...]], tuple[float, Kube]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def as_user(self, username: str, role: str) -> Kube:
        """The connection that acts as this REST user."""
        key = identity(self.prefix, username, role)
        now = time.monotonic()
        self._retire_idle(now)
        found = self._open.get(key)
        kube = found[1] if found is not None else self.kube.impersonating(*key)
        self._open[key] = (now, kube)
        return kube

    def _retire_idle(self, now: float) -> None:
        idle = [key for key, (used, _) in self._open.items() if now - used > IDLE_SECONDS]
        for key in idle:
            task = asyncio.get_running_loop().create_task(self._open.pop(key)[1].close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every connection (the gateway stops)."""
        kubes = [kube for _, kube in self._open.values()]
        self._open.clear()
        for kube in kubes:
            with contextlib.suppress(Exception):
                await kube.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
