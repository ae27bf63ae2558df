"""The node's heartbeat: a coordination.k8s.io/v1 Lease renewed the way the kubelet renews its own.

Renewing a small Lease every few seconds is cheap for the API server, unlike
rewriting a large Host status; the operator reads the Lease to decide whether
the Host is Ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from kubernetes.aio.client.exceptions import ApiException

from vapor.kube import Kube
from vapor.model import Host, names

log = logging.getLogger("vapor.agent.heartbeat")

MERGE_PATCH = "application/merge-patch+json"


def micro_time(moment: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeat:
    """Keeps the Lease ``<namespace>/<node>`` held by this node and fresh."""

    def __init__(
        self,
        kube: Kube,
        node_name: str,
        namespace: str,
        *,
        duration_seconds: int = 40,
        renew_seconds: float = 10.0,
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self.namespace = namespace
        self.duration_seconds = duration_seconds
        self.renew_seconds = renew_seconds
        # The Host, as last seen: the Lease names it as owner (so deleting the Host removes its Lease).
        self.owner: Callable[[], Host | None] = lambda: None
        self.renewals = 0

    def _owner_references(self) -> list[dict[str, Any]]:
        host = self.owner()
        if host is None or not host.metadata.uid:
            return []
        return [{"apiVersion": host.api_version, "kind": "Host", "name": host.name, "uid": host.metadata.uid}]

    async def renew(self) -> None:
        """Renew the Lease (creating it, or taking it over, when needed)."""
        api = self.kube.coordination
        now = micro_time()
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": self.duration_seconds, "renewTime": now}
        try:
            current = await api.read_namespaced_lease(self.node_name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": now},
            }
            if refs := self._owner_references():
                body["metadata"]["ownerReferences"] = refs
            await api.create_namespaced_lease(self.namespace, cast(Any, body))  # a dict is sent as it is
            log.info("created the heartbeat lease", extra={"lease": f"{self.namespace}/{self.node_name}"})
            self.renewals += 1
            return
        if current.spec is None or current.spec.holder_identity != self.node_name:
            spec["acquireTime"] = now
        patch: dict[str, Any] = {
            # resourceVersion makes the renewal conditional, as the kubelet's update is.
            "metadata": {"resourceVersion": current.metadata.resource_version if current.metadata else None},
            "spec": spec,
        }
        held = [r.uid for r in (current.metadata.owner_references or [])] if current.metadata else []
        if (refs := self._owner_references()) and held != [refs[0]["uid"]]:  # a new Host after a deletion
            patch["metadata"]["ownerReferences"] = refs
        await api.patch_namespaced_lease(
            self.node_name, self.namespace, patch, field_manager=names.FIELD_MANAGER_AGENT, _content_type=MERGE_PATCH
        )
        self.renewals += 1

    async def renew_at_exit(self, timeout: float = 2.0) -> None:
        """Renew once more as the agent stops, so the Lease's silence starts at the stop, not up to an interval before.

        The Lease stays held (a graceful stop is not the host going away), and a
        renewal the API server does not answer within ``timeout`` seconds is
        given up: it never holds the exit back. Nothing is renewed for an agent
        that never renewed (one that could not start is not alive).
        """
        if not self.renewals:
            return
        lease = f"{self.namespace}/{self.node_name}"
        try:
            await asyncio.wait_for(self.renew(), timeout)
        except Exception as exc:  # whatever it is, the agent exits as it would have
            log.warning("could not renew the lease at exit", extra={"lease": lease, "error": str(exc) or repr(exc)})
            return
        log.info("renewed the lease at exit", extra={"lease": lease})

    async def run(self) -> None:
        """Renew every ``renew_seconds``; after a failure retry sooner, as the kubelet does."""
        delay = self.renew_seconds
        while True:
            try:
                await self.renew()
                delay = self.renew_seconds
            # aiohttp.ClientError: an API server that goes away mid-request (ServerDisconnectedError) must
            # not end the heartbeat, which nothing would start again while the agent runs on.
            except (TimeoutError, ApiException, OSError, aiohttp.ClientError) as exc:
                delay = min(self.renew_seconds, 1.0)
                log.warning("lease renewal failed", extra={"error": str(exc)})
            await asyncio.sleep(delay)
