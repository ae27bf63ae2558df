"""A real node-local API (the agent's aiohttp server) in the test's event loop, and the identities to call it.

``running_node_api`` makes, in the test's namespace, the ServiceAccount the
gateway runs as (``gateway``) and another one (``other``), a Host for a unique
node name, and starts ``NodeAPI`` on 127.0.0.1 with a free port, TLS on and
only ``system:serviceaccount:<namespace>:gateway`` allowed. It publishes the
endpoint into the Host's status the way the agent does. Point a gateway at it
with ``harness.gateway_config()`` (its TokenRequest identity and the default
host). Everything is removed after the block.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vapor.agent._config import AgentConfig
from vapor.agent.nodeapi.context import RouteFactory
from vapor.agent.nodeapi.server import ROUTES, NodeAPI
from vapor.kube import Kube, NotFound
from vapor.model import Host, HostSpec, ObjectMeta, names

GATEWAY_SA = "gateway"
OTHER_SA = "other"


@dataclass
class NodeAPIHarness:
    """A running node API and how to reach it."""

    api: NodeAPI
    node_name: str
    namespace: str
    kubectl: Any

    @property
    def url(self) -> str:
        return self.api.url

    def token(self, service_account: str = GATEWAY_SA, audience: str | None = names.AGENT_AUDIENCE) -> str:
        """A fresh token of a ServiceAccount of the test's namespace (TokenRequest through kubectl).

        Of the agents' audience by default, as the gateway's; ``audience=None``: the API server's own.
        """
        extra = [f"--audience={audience}"] if audience else []
        return str(self.kubectl("create", "token", service_account, "-n", self.namespace, *extra).stdout.strip())

    def gateway_config(self) -> dict[str, Any]:
        """Settings that make a gateway app call this node API as the allowed ServiceAccount."""
        return {"AGENT_SERVICE_ACCOUNT": f"{self.namespace}/{GATEWAY_SA}", "DEFAULT_HOST": self.node_name}


@contextlib.asynccontextmanager
async def running_node_api(
    kube: Kube,
    kubectl: Any,
    namespace: str,
    node_name: str,
    *,
    routes: Iterable[RouteFactory] = ROUTES,
    tls: bool = True,
    **config: Any,
) -> AsyncIterator[NodeAPIHarness]:
    """A NodeAPI for ``node_name`` (see the module's docstring); ``config`` overrides AgentConfig fields."""
    for name in (GATEWAY_SA, OTHER_SA):
        kubectl("create", "serviceaccount", name, "-n", namespace)
    hosts = kube.resources(Host)
    await hosts.create(Host(metadata=ObjectMeta(name=node_name), spec=HostSpec()), field_manager="vapor-test")
    state = Path(tempfile.mkdtemp(prefix="vapor-nodeapi-"))
    settings = AgentConfig(
        node_name=node_name,
        state_dir=state,
        api_bind="127.0.0.1:0",
        api_allowed_user=f"system:serviceaccount:{namespace}:{GATEWAY_SA}",
        api_tls=tls,
        docker_host="",
        cri_sockets=(),
    )
    api = NodeAPI(replace(settings, **config), kube, routes=routes)
    try:
        await api.start()
        await api.publish()
        yield NodeAPIHarness(api=api, node_name=node_name, namespace=namespace, kubectl=kubectl)
    finally:
        await api.stop()
        with contextlib.suppress(NotFound):
            await hosts.delete(node_name)
        shutil.rmtree(state, ignore_errors=True)
