"""POST /storage/format of the agent's node-local API (real server, real TokenReview), on loop devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from vapor.kube import Kube

from ..conftest import Kubectl
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
        modules=["vapor.agent._storage_api"],
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
