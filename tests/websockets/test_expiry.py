"""A WebSocket lasts as long as its token: when the token of its auth message expires, the gateway closes it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from quart.testing.connections import WebsocketDisconnectError

from vapor.gateway import create_app

from ..gateway.conftest import Users, login
from ..support.nodeapi import NodeAPIHarness
from .conftest import authenticate, receive, send

LIFETIME = 4  # seconds a token of this test's gateway is valid


async def test_a_metrics_socket_is_closed_when_its_token_expires(
    gateway_config: dict[str, Any], node: NodeAPIHarness, users: Users
) -> None:
    config = {**gateway_config, **node.gateway_config(), "TOKEN_LIFETIME": LIFETIME}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        data = await login(client, users.viewer)
        async with client.websocket("/ws/metrics") as ws:
            await authenticate(ws, data["token"])
            await send(ws, {"type": "subscribe"})
            assert (await asyncio.wait_for(receive(ws), 30))["type"] == "metric"  # streaming
            deadline = time.monotonic() + LIFETIME + 15
            message = {"type": "metric"}
            while message["type"] == "metric" and time.monotonic() < deadline:
                message = await asyncio.wait_for(receive(ws), 15)
            assert message["type"] == "error", "the socket outlived its token"
            assert message["error"]["code"] == "UNAUTHORIZED" and "expired" in message["error"]["message"], message
            assert time.time() >= data["expires_at"]
            with pytest.raises(WebsocketDisconnectError) as closed:
                await asyncio.wait_for(ws.receive(), 15)
            assert closed.value.args[0] == 4401
