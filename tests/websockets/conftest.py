"""A gateway app and a real node-local API serving the agent's WebSockets (vapor.agent.nodeapi.ws).

The agent's API runs in the test's event loop (tests/support/nodeapi.py), so
its PTY shells are real processes of this machine, run as the test's PAM users.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from vapor.agent.nodeapi import ws as ws_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import (  # noqa: F401
    Users,
    bearer,
    gateway_config,
    kube,
    login,
    pam_service_name,
    secret_namespace,
    users,
)
from ..support.nodeapi import NodeAPIHarness, running_node_api


@pytest.fixture
async def node(kube: Kube, kubectl: Kubectl, namespace: str) -> AsyncIterator[NodeAPIHarness]:  # noqa: F811
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, name, routes=[ws_api.routes]) as harness:
        yield harness


@pytest.fixture
async def gw_app(gateway_config: dict[str, Any], node: NodeAPIHarness) -> AsyncIterator[TestApp]:  # noqa: F811
    async with create_app({**gateway_config, **node.gateway_config()}).test_app() as test_app:
        yield test_app


@pytest.fixture
def gw_client(gw_app: TestApp) -> Client:
    return gw_app.test_client()


async def send(ws: Socket, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def receive(ws: Socket) -> dict[str, Any]:
    raw = await ws.receive()
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    return body


async def authenticate(ws: Socket, token: str) -> None:
    await send(ws, {"type": "auth", "payload": {"token": token}})
    answer = await receive(ws)
    assert answer["type"] == "auth" and answer["status"] == "ok", answer


async def shell_output(client: Client, token: str, line: str, until: str, timeout: float = 30.0) -> str:
    """Open /ws/terminal as the token's user, type ``line``, and collect the output until it shows ``until``."""
    async with client.websocket("/ws/terminal") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe", "payload": {}})
        await send(ws, {"type": "input", "data": line + "\n"})
        seen = ""
        while until not in seen:
            message = await asyncio.wait_for(receive(ws), timeout)
            assert message["type"] == "output", message
            seen += message["data"]
        await send(ws, {"type": "input", "data": "exit\n"})
    return seen
