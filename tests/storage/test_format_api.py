"""POST /storage/format of the agent's node-local API (real server, real TokenReview), on loop devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from vapor.agent.nodeapi import storage as storage_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.nodeapi import running_node_api
from .loops import LoopDevices, blkid, mount


async def post(harness: Any, body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {harness.token()}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{harness.url}/storage/format", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_agent_formats_and_refuses(
    loops: LoopDevices, tmp_path: Path, kube: Kube, kubectl: Kubectl, namespace: str, unique: Any
) -> None:
    device, busy = loops.make(), loops.make()
    async with running_node_api(
        kube,
        kubectl,
        namespace,
        unique("vtest-fmt"),
        routes=[storage_api.routes],
        tls=False,
        libvirt_uri="test:///default",
    ) as harness:
        status, answer = await post(harness, {"device": device, "filesystem": "xfs", "label": "API-XFS"})
        assert status == 200, answer
        assert blkid(device)["TYPE"] == "xfs" and blkid(device)["LABEL"] == "API-XFS"

        status, answer = await post(harness, {"device": busy, "filesystem": "ext4"})
        assert status == 200, answer
        mount(busy, tmp_path / "mnt")
        status, answer = await post(harness, {"device": busy, "filesystem": "xfs"})
        assert (status, answer["error"]["code"]) == (409, "CONFLICT") and "mounted" in answer["error"]["message"]
        assert blkid(busy)["TYPE"] == "ext4"

        for body, code, http in [
            ({"device": device, "filesystem": "ntfs"}, "INVALID_INPUT", 400),
            ({"device": device, "filesystem": "xfs", "label": "MUCH-TOO-LONG-X"}, "INVALID_INPUT", 400),
            ({"device": "/tmp/x", "filesystem": "ext4"}, "INVALID_INPUT", 400),
            ({"device": "/dev/vtest-none", "filesystem": "ext4"}, "NOT_FOUND", 404),
            ({"device": device}, "INVALID_INPUT", 400),
            ({"device": device, "filesystem": "ext4", "force": True}, "INVALID_INPUT", 400),
            ([device], "INVALID_INPUT", 400),
        ]:
            status, answer = await post(harness, body)
            assert (status, answer["error"]["code"]) == (http, code), body
        assert blkid(device)["LABEL"] == "API-XFS"


async def test_format_through_the_gateway(
    loops: LoopDevices,
    tmp_path: Path,
    kube: Kube,
    kubectl: Kubectl,
    namespace: str,
    unique: Any,
    gateway_config: dict[str, Any],
    users: Users,
) -> None:
    """POST /api/v1/storage/format: the gateway asks the host's agent, which formats or refuses."""
    device, busy = loops.make(), loops.make()
    node = unique("vtest-gwfmt")
    async with (
        running_node_api(
            kube, kubectl, namespace, node, routes=[storage_api.routes], libvirt_uri="test:///default"
        ) as harness,
        create_app({**gateway_config, **harness.gateway_config()}).test_app() as app,
    ):
        client = app.test_client()
        admin = bearer((await login(client, users.admin))["token"])
        response = await client.post(
            f"/api/v1/storage/format?host={node}",
            json={"device": device, "filesystem": "ext4", "label": "GW-DATA"},
            headers=admin,
        )
        body = await response.get_json()
        assert response.status_code == 200, body
        assert body["data"]["message"] == f"Formatted {device} as ext4"
        assert blkid(device)["TYPE"] == "ext4" and blkid(device)["LABEL"] == "GW-DATA"
        events = kubectl("get", "events", "-A", "--field-selector", f"involvedObject.name={node}", "-o", "json").stdout
        assert "FormatRequested" in events and users.admin.name in events

        # A mounted device is refused by the agent's guard, and stays as it was.
        first = await client.post(
            f"/api/v1/storage/format?host={node}", json={"device": busy, "filesystem": "ext4"}, headers=admin
        )
        assert first.status_code == 200, await first.get_json()
        mount(busy, tmp_path / "mnt")
        response = await client.post(
            f"/api/v1/storage/format?host={node}", json={"device": busy, "filesystem": "xfs"}, headers=admin
        )
        body = await response.get_json()
        assert (response.status_code, body["error"]["code"]) == (409, "CONFLICT"), body
        assert blkid(busy)["TYPE"] == "ext4"

        # Checked by the gateway before any agent is asked.
        for payload, status in [
            ({"device": device, "filesystem": "ntfs"}, 400),
            ({"device": "/etc/passwd", "filesystem": "ext4"}, 400),
            ({"device": device, "filesystem": "ext4", "label": "bad label!"}, 400),
            ({"device": device, "filesystem": "ext4", "force": True}, 400),
        ]:
            response = await client.post(f"/api/v1/storage/format?host={node}", json=payload, headers=admin)
            assert response.status_code == status, payload
            assert (await response.get_json())["error"]["code"] == "INVALID_INPUT"
        viewer = bearer((await login(client, users.viewer))["token"])
        response = await client.post(
            f"/api/v1/storage/format?host={node}", json={"device": device, "filesystem": "ext4"}, headers=viewer
        )
        assert response.status_code == 403
        assert blkid(device)["LABEL"] == "GW-DATA"
