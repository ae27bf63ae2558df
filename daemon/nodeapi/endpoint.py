"""Where the gateway finds this node's API: ``Host.status.agentEndpoint`` (URL and certificate fingerprint).

Written by server-side apply as its own field manager (``vapor-agent-nodeapi``
owns that one field), checked every ``PUBLISH_INTERVAL`` seconds against the
Host the agent watches, so a Host made again or an edit by hand is set right.
The endpoint stays published when the agent stops: the next agent on this
node serves it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from vapor.kube import Kube, KubeError
from vapor.model import Host, HostStatus
from vapor.model.host import AgentEndpoint

log = logging.getLogger("vapor.agent.nodeapi")

FIELD_MANAGER = "vapor-agent-nodeapi"  # owns Host.status.agentEndpoint only
PUBLISH_INTERVAL = 30.0  # how often the published endpoint is checked against the Host


class EndpointPublisher:
    """Keeps the Host's ``status.agentEndpoint`` at ``url`` and ``fingerprint``."""

    def __init__(self, kube: Kube, node_name: str, host: Callable[[], Host | None] | None = None) -> None:
        self.kube = kube
        self.node_name = node_name
        self._host = host  # the agent's view of its Host (None: always write)
        self.url = ""
        self.fingerprint: str | None = None

    def endpoint(self) -> AgentEndpoint:
        """``Host.status.agentEndpoint`` as written."""
        return AgentEndpoint(url=self.url, cert_sha256=self.fingerprint or None)

    async def publish(self) -> bool:
        """Write the endpoint into the Host's status when it is not there yet; whether it wrote."""
        host = self._host() if self._host is not None else None
        wanted = self.endpoint()
        current = host.status.agent_endpoint if host is not None and host.status is not None else None
        if current is not None and current.to_apply() == wanted.to_apply():
            return False
        await self.kube.resources(Host).apply_status(
            self.node_name, HostStatus(agent_endpoint=wanted), field_manager=FIELD_MANAGER, force=True
        )
        log.info("published the node API endpoint", extra=wanted.to_apply())
        return True

    async def run(self) -> None:
        """Publish now and every PUBLISH_INTERVAL seconds, until cancelled."""
        while True:
            try:
                await self.publish()
            except (KubeError, OSError, TimeoutError) as exc:
                log.warning("could not publish the node API endpoint", extra={"error": str(exc)})
            await asyncio.sleep(PUBLISH_INTERVAL)
