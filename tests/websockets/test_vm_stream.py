"""/ws/vms against the real control plane: the gateway's one VM watch fed to every socket.

The status changes are written by kubectl, as an agent's would be (no agent runs here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from quart.testing.connections import WebsocketDisconnectError
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from vapor.gateway._vmfeed import QUEUE_LIMIT, Subscriber

from ..conftest import Kubectl
from ..gateway.conftest import Users, app, bearer, client, login  # noqa: F401
from ..support.wait import eventually
from .conftest import authenticate, receive, send


async def _subscribed(ws: Socket, token: str, namespace: str | None) -> dict[str, Any]:
    """Authenticate and subscribe; the sync message the stream starts with."""
    await authenticate(ws, token)
    await send(ws, {"type": "subscribe", "payload": {"namespace": namespace} if namespace else None})
    sync = await asyncio.wait_for(receive(ws), 30)
    assert sync["type"] == "sync", sync
    return sync


async def _change(ws: Socket, name: str, event: str) -> dict[str, Any]:
    """The next change of VM ``name`` of that event type (other changes of it are skipped)."""
    while True:
        message = await asyncio.wait_for(receive(ws), 10)
        assert message["type"] == "vm", message
        if message["vm"]["name"] == name and message["event"] == event:
            return message


async def test_a_status_patched_by_kubectl_arrives_on_the_stream(
    client: Client,  # noqa: F811
    users: Users,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    admin = (await login(client, users.admin))["token"]
    viewer = (await login(client, users.viewer))["token"]
    body = {"name": "web", "namespace": namespace, "memory": "32Mi"}
    assert (await client.post("/api/v1/vms", json=body, headers=bearer(admin))).status_code == 201

    async def listed() -> list[dict[str, Any]]:
        answer = await client.get(f"/api/v1/vms?namespace={namespace}", headers=bearer(viewer))
        return list((await answer.get_json())["data"]["vms"])

    before = await eventually(listed)
    async with client.websocket("/ws/vms") as ws:
        sync = await _subscribed(ws, viewer, namespace)
        assert sync["data"] == {"vms": before, "count": 1}  # the data GET /api/v1/vms answers

        patch = json.dumps({"status": {"phase": "Paused"}})
        start = time.monotonic()
        kubectl("patch", "vvm", "web", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
        change = await _change(ws, "web", "MODIFIED")
        took = time.monotonic() - start
        assert change["vm"]["phase"] == "Paused" and change["vm"]["status"] == "Paused", change
        assert took < 5, f"the change took {took:.1f} s to arrive"  # kubectl's own start is most of it
        shown = await client.get(f"/api/v1/vms/web?namespace={namespace}", headers=bearer(viewer))
        assert change["vm"] == (await shown.get_json())["data"]  # the same view as the REST API's

        kubectl("delete", "vvm", "web", "-n", namespace, "--wait=false")
        kubectl(
            "patch",
            "vvm",
            "web",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        gone = await _change(ws, "web", "DELETED")
        assert gone["vm"]["id"] == change["vm"]["id"]

        # a VM of another namespace is not this subscriber's
        kubectl("create", "namespace", f"{namespace}-x")
        try:
            other = {"name": "other", "namespace": f"{namespace}-x", "memory": "32Mi"}
            assert (await client.post("/api/v1/vms", json=other, headers=bearer(admin))).status_code == 201
            mine = {"name": "mine", "namespace": namespace, "memory": "32Mi"}
            assert (await client.post("/api/v1/vms", json=mine, headers=bearer(admin))).status_code == 201
            added = await asyncio.wait_for(receive(ws), 10)
            assert added["event"] == "ADDED" and added["vm"]["name"] == "mine", added
        finally:
            kubectl("delete", "vvm", "--all", "-n", f"{namespace}-x", "--wait=false", check=False)
            kubectl("delete", "namespace", f"{namespace}-x", "--wait=false", check=False)


async def _sync_of(client: Client, token: str, namespace: str) -> list[dict[str, Any]]:  # noqa: F811
    """The VMs of a new socket's sync (the socket is closed again)."""
    async with client.websocket("/ws/vms") as ws:
        return list((await _subscribed(ws, token, namespace))["data"]["vms"])


async def test_a_reconnect_starts_from_a_sync_with_what_changed_meanwhile(
    client: Client,  # noqa: F811
    users: Users,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    admin = (await login(client, users.admin))["token"]
    body = {"name": "db", "namespace": namespace, "memory": "32Mi"}
    assert (await client.post("/api/v1/vms", json=body, headers=bearer(admin))).status_code == 201
    first = await eventually(lambda: _sync_of(client, admin, namespace), what="the VM in a sync")
    assert [vm["phase"] for vm in first] == [None]
    patch = json.dumps({"status": {"phase": "Failed"}})
    kubectl("patch", "vvm", "db", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)

    async def failed_in_sync() -> bool:
        return [vm["phase"] for vm in await _sync_of(client, admin, namespace)] == ["Failed"]

    await eventually(failed_in_sync, what="a new socket's sync shows the change made while none was open")


async def test_the_stream_needs_a_token(client: Client) -> None:  # noqa: F811
    for first in ({"type": "subscribe"}, {"type": "auth", "payload": {"token": "not-a-jwt"}}):
        async with client.websocket("/ws/vms") as ws:
            await send(ws, first)
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["error"]["code"] == "UNAUTHORIZED", answer
            with pytest.raises(WebsocketDisconnectError):  # and closed
                await asyncio.wait_for(ws.receive(), 5)


async def test_the_stream_counts_against_the_sockets_of_a_client(client: Client, users: Users) -> None:  # noqa: F811
    token = (await login(client, users.viewer))["token"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            ws = await stack.enter_async_context(client.websocket("/ws/vms"))
            await _subscribed(ws, token, None)
        async with client.websocket("/ws/vms") as eleventh:
            answer = await receive(eleventh)
            assert answer["type"] == "error" and answer["error"]["code"] == "RATE_LIMITED", answer


async def test_a_subscriber_that_falls_behind_is_sent_a_sync() -> None:
    subscriber = Subscriber(None)
    for i in range(3):
        subscriber.push(f"change {i}".encode())
    assert await subscriber.next() == b"change 0"
    for _ in range(QUEUE_LIMIT + 1):
        subscriber.push(b"x")
    assert await subscriber.next() is None  # a fresh sync instead of what it missed
    subscriber.push(b"after")
    assert await subscriber.next() == b"after"


async def test_openapi_documents_the_stream_as_an_extension(client: Client) -> None:  # noqa: F811
    spec = await (await client.get("/openapi.json")).get_json()
    stream = spec["x-vapor-websockets"]["/ws/vms"]
    assert "extension beyond the v1 contract" in stream["summary"]
    assert "/ws/vms" not in spec["paths"]  # not a REST operation
    change = spec["components"]["schemas"]["VMStreamChange"]
    assert change["properties"]["vm"] == {"$ref": "#/components/schemas/VMView"}
    assert set(change["properties"]["event"]["enum"]) == {"ADDED", "MODIFIED", "DELETED"}
    assert spec["components"]["schemas"]["VMStreamSync"]["properties"]["data"] == {
        "$ref": "#/components/schemas/VMList"
    }
