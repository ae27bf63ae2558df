"""A gateway app whose host's agent serves the containers and Docker routes of the node-local API, for real.

The node API runs in the test's event loop (tests/support/nodeapi.py) with
the runtimes a test picks (the hermetic dockerd, the private containerd, or
none); the gateway reaches it over TLS as its ServiceAccount, after a real
TokenReview, exactly as in a cluster. ``Rest`` wraps the gateway's test
client with an admin's and a viewer's token.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import containers as containers_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..gateway.conftest import Users, bearer, login
from ..support.nodeapi import running_node_api


@dataclass
class Rest:
    """Calls to /api/v1 as the admin (or the viewer); each returns (status, body)."""

    client: Client
    admin: str
    viewer: str

    async def call(self, method: str, path: str, *, json: Any = None, as_viewer: bool = False) -> tuple[int, Any]:
        token = self.viewer if as_viewer else self.admin
        response = await self.client.open(f"/api/v1{path}", method=method, json=json, headers=bearer(token))
        return response.status_code, await response.get_json()

    async def data(self, method: str, path: str, *, json: Any = None, status: int = 200) -> Any:
        """``data`` of a call that must succeed with ``status``."""
        got, body = await self.call(method, path, json=json)
        assert got == status and body["status"] == "success", body
        return body["data"]


@contextlib.asynccontextmanager
async def rest_for_host(
    kube: Kube, kubectl: Any, namespace: str, gateway_config: dict[str, Any], users: Users, **runtimes: Any
) -> AsyncIterator[Rest]:
    """A gateway and one host whose agent has ``runtimes`` (docker_host=..., cri_sockets=(...))."""
    node = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, node, routes=[containers_api.routes], **runtimes) as harness:
        config = {**gateway_config, **harness.gateway_config()}
        async with create_app(config).test_app() as app:
            client = app.test_client()
            admin = (await login(client, users.admin))["token"]
            viewer = (await login(client, users.viewer))["token"]
            yield Rest(client, admin, viewer)
