"""Mounts end to end: a real agent mounts real loop devices for Mounts written through REST and kubectl.

The agent runs as a process against the session's API server and libvirtd;
the gateway runs in Quart's test harness with real PAM users. Devices are
loop devices of the test, mount points live under the test's tmp dir.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quart.typing import TestClientProtocol as Client

from vapor.agent.host import format as _format

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .loops import LoopDevices, blkid, is_mounted, mount

MOUNT_WAIT = 60.0


def start_agent(agent_factory: Callable[..., AgentProcess], node: str) -> AgentProcess:
    # No node-local API: the mounts go through the Mount resources only.
    return agent_factory(node, inventory_interval=1.0, extra_args=("--api-bind", "")).start()


async def admin_headers(client: Client, users: Users) -> dict[str, str]:
    return bearer((await login(client, users.admin))["token"])


async def disks(client: Client, headers: dict[str, str], node: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/storage/disks?host={node}", headers=headers)
    body = await response.get_json()
    if response.status_code == 404 and body["error"]["code"] == "NOT_FOUND":
        return []  # the agent has not registered its Host yet
    assert response.status_code == 200, body
    return list(body["data"]["disks"])


async def partition_of(client: Client, headers: dict[str, str], node: str, device: str) -> dict[str, Any] | None:
    for disk in await disks(client, headers, node):
        if disk["path"] == device:
            return dict(disk["partitions"][0]) if disk["partitions"] else None
    return None


def host_events(kubectl: Kubectl, node: str) -> list[str]:
    out = kubectl("get", "events.events.k8s.io", "-n", "default", "-o", "json").stdout
    return [e.get("reason", "") for e in json.loads(out)["items"] if e.get("regarding", {}).get("name") == node]


def mount_yaml(name: str, node: str, device: str, mount_point: Path, fs: str, label: str | None = None) -> str:
    fmt = f"\n  format:\n    label: {label}" if label else ""
    return (
        f"apiVersion: vapor.io/v1alpha1\nkind: Mount\nmetadata:\n  name: {name}\n  labels:\n    vapor.io/host: {node}\n"
        f"spec:\n  host: {node}\n  device: {device}\n  mountPoint: {mount_point}\n  filesystem: {fs}{fmt}\n"
    )


async def test_disks_show_loop_devices_with_blkid_fields_and_rest_mounts(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
    kubectl: Kubectl,
) -> None:
    node = mounts_of_node
    ext4, xfs = loops.make(), loops.make()
    _format.format_device(ext4, "ext4", "VT-EXT4", _format.gather_facts())
    _format.format_device(xfs, "xfs", "VT-XFS", _format.gather_facts())
    start_agent(agent_factory, node)
    headers = await admin_headers(client, users)

    for device, fs, label in ((ext4, "ext4", "VT-EXT4"), (xfs, "xfs", "VT-XFS")):
        part = await eventually(lambda d=device: partition_of(client, headers, node, d), MOUNT_WAIT, f"{device} listed")
        assert part["filesystem"] == fs and part["label"] == label and part["uuid"] == blkid(device)["UUID"]
        assert part["mount_point"] is None

    for device, fs in ((ext4, "ext4"), (xfs, "xfs")):
        target = tmp_path / f"mnt-{fs}"
        body = {"device": device, "mount_point": str(target), "filesystem": fs, "options": "rw,noatime"}
        response = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
        answer = await response.get_json()
        assert response.status_code == 200, answer
        assert answer["data"]["phase"] == "Mounted" and answer["data"]["mounted"] is True
        assert is_mounted(target)

        async def shows_mount(d: str = device, t: Path = target) -> bool:
            part = await partition_of(client, headers, node, d)
            return bool(part and part["mount_point"] == str(t) and part["available"])

        await eventually(shows_mount, MOUNT_WAIT, "mount point in /storage/disks")
        again = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
        assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "ALREADY_EXISTS"

    for fs in ("ext4", "xfs"):
        target = tmp_path / f"mnt-{fs}"
        response = await client.delete(
            f"/api/v1/storage/mount?host={node}", json={"mount_point": str(target)}, headers=headers
        )
        assert response.status_code == 200, await response.get_json()
        assert not is_mounted(target)
    assert kubectl("get", "mounts.vapor.io", "-l", f"vapor.io/host={node}", "-o", "name").stdout.strip() == ""
    reasons = host_events(kubectl, node)
    assert reasons.count("Mounted") >= 2 and reasons.count("Unmounted") >= 2


async def test_kubectl_mount_formats_blank_device_and_agent_restart_mounts_again(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    kubectl: Kubectl,
) -> None:
    node = mounts_of_node
    device = loops.make()
    target = tmp_path / "data"
    agent = start_agent(agent_factory, node)
    name = f"{node}-data"
    kubectl.apply(mount_yaml(name, node, device, target, "ext4", label="KDATA"))
    await eventually(lambda: is_mounted(target), MOUNT_WAIT, "mounted by the agent")
    assert blkid(device)["TYPE"] == "ext4" and blkid(device)["LABEL"] == "KDATA"
    status = json.loads(kubectl("get", "mounts.vapor.io", name, "-o", "json").stdout)["status"]
    assert status["phase"] == "Mounted" and status["mounted"] is True
    assert "Formatted" in host_events(kubectl, node)

    # Restart: stop the agent, unmount by hand, start it again: the Mount is the truth.
    agent.stop()
    subprocess.run(["umount", str(target)], check=True)
    agent.start()
    await eventually(lambda: is_mounted(target), MOUNT_WAIT, "mounted again after the restart")
    uuid = blkid(device)["UUID"]
    assert blkid(device)["UUID"] == uuid  # not formatted again

    kubectl("delete", "mounts.vapor.io", name, "--wait=true", "--timeout=60s")
    assert not is_mounted(target)
    assert "Unmounted" in host_events(kubectl, node)


async def test_refusals_and_bad_input(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
) -> None:
    node = mounts_of_node
    device = loops.make()
    other = loops.make()
    _format.format_device(device, "ext4", None, _format.gather_facts())
    _format.format_device(other, "ext4", None, _format.gather_facts())
    agent = start_agent(agent_factory, node)
    headers = await admin_headers(client, users)
    await eventually(lambda: partition_of(client, headers, node, device), MOUNT_WAIT, "device listed")
    url = f"/api/v1/storage/mount?host={node}"

    # A directory that is not empty: refused (the Mount reports why), allowed with x-vapor.nonempty.
    full = tmp_path / "full"
    full.mkdir()
    (full / "file").write_text("mine")
    body = {"device": device, "mount_point": str(full), "filesystem": "ext4"}
    response = await client.post(url, json=body, headers=headers)
    error = (await response.get_json())["error"]
    assert response.status_code == 409 and error["code"] == "CONFLICT" and "not empty" in error["message"]
    assert not is_mounted(full)
    await client.delete(url, json={"mount_point": str(full)}, headers=headers)
    forced = {**body, "mount_point": str(tmp_path / "full2"), "options": "x-vapor.nonempty"}
    (tmp_path / "full2").mkdir()
    (tmp_path / "full2" / "file").write_text("mine")
    response = await client.post(url, json=forced, headers=headers)
    assert response.status_code == 200, await response.get_json()

    # A device already mounted elsewhere: refused.
    busy = tmp_path / "busy"
    mount(other, tmp_path / "by-hand")
    response = await client.post(
        url, json={"device": other, "mount_point": str(busy), "filesystem": "ext4"}, headers=headers
    )
    error = (await response.get_json())["error"]
    assert response.status_code == 409 and "already mounted" in error["message"]

    # A loop device of a VM image in the agent's disks folder: refused, never mounted.
    image = loops.make(backing=agent.storage_dir / "vtest-vm.img")
    _format.format_device(image, "ext4", None, _format.gather_facts())
    await eventually(lambda: partition_of(client, headers, node, image), MOUNT_WAIT, "image device listed")
    response = await client.post(
        url, json={"device": image, "mount_point": str(tmp_path / "vm"), "filesystem": "ext4"}, headers=headers
    )
    error = (await response.get_json())["error"]
    assert response.status_code == 409 and "VM image" in error["message"]
    assert not is_mounted(tmp_path / "vm")

    bad: list[tuple[dict[str, Any], str, int]] = [
        ({"device": "sdb", "mount_point": "/mnt/x", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": "/dev/../etc/passwd", "mount_point": "/mnt/x", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "relative/dir", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "/etc/vtest", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "/", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "/proc", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "/mnt/a/../b", "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": device, "mount_point": "/mnt/x", "filesystem": "ntfs"}, "INVALID_INPUT", 400),
        (
            {"device": device, "mount_point": "/mnt/x", "filesystem": "ext4", "options": "rw;reboot"},
            "INVALID_INPUT",
            400,
        ),
        ({"device": device, "mount_point": "/mnt/x", "filesystem": "ext4", "extra": 1}, "INVALID_INPUT", 400),
        ({"device": device, "filesystem": "ext4"}, "INVALID_INPUT", 400),
        ({"device": "/dev/vtest-no-such-disk", "mount_point": "/mnt/x", "filesystem": "ext4"}, "NOT_FOUND", 404),
    ]
    for payload, code, status in bad:
        response = await client.post(url, json=payload, headers=headers)
        answer = await response.get_json()
        assert (response.status_code, answer["error"]["code"]) == (status, code), payload
    response = await client.post(
        "/api/v1/storage/mount?host=vtest-no-such-host",
        json={"device": device, "mount_point": "/mnt/x", "filesystem": "ext4"},
        headers=headers,
    )
    assert response.status_code == 404
    response = await client.delete(url, json={"mount_point": str(tmp_path / "never")}, headers=headers)
    assert response.status_code == 404 and (await response.get_json())["error"]["code"] == "NOT_FOUND"
    viewer = bearer((await login(client, users.viewer))["token"])
    response = await client.post(url, json=body, headers=viewer)
    assert response.status_code == 403


async def test_a_busy_mount_stays_until_it_can_be_unmounted(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
    kubectl: Kubectl,
) -> None:
    node = mounts_of_node
    device = loops.make()
    _format.format_device(device, "ext4", None, _format.gather_facts())
    start_agent(agent_factory, node)
    headers = await admin_headers(client, users)
    await eventually(lambda: partition_of(client, headers, node, device), MOUNT_WAIT, "device listed")
    target = tmp_path / "busy"
    url = f"/api/v1/storage/mount?host={node}"
    response = await client.post(
        url, json={"device": device, "mount_point": str(target), "filesystem": "ext4"}, headers=headers
    )
    assert response.status_code == 200, await response.get_json()
    held = (target / "open-file").open("w")  # keeps the filesystem busy
    try:
        response = await client.delete(f"{url}&wait=3", json={"mount_point": str(target)}, headers=headers)
        answer = await response.get_json()
        assert response.status_code == 202, answer
        assert answer["data"]["phase"] == "Unmounting" and answer["data"]["mounted"] is True
        assert "busy" in (answer["data"]["message"] or "")
        assert is_mounted(target)
        assert kubectl("get", "mounts.vapor.io", "-l", f"vapor.io/host={node}", "-o", "name").stdout.strip()
    finally:
        held.close()
    # Once nothing holds it, the agent's retry unmounts it and the Mount goes.
    await eventually(lambda: not is_mounted(target), MOUNT_WAIT, "unmounted after the file was closed")
    gone = lambda: kubectl("get", "mounts.vapor.io", "-l", f"vapor.io/host={node}", "-o", "name").stdout.strip() == ""  # noqa: E731
    await eventually(gone, MOUNT_WAIT, "Mount deleted")
    assert "UnmountFailed" in host_events(kubectl, node)


async def test_openapi_documents_the_storage_endpoints(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    assert "get" in spec["paths"]["/api/v1/storage/disks"]
    assert {"post", "delete"} <= set(spec["paths"]["/api/v1/storage/mount"])
    assert "post" in spec["paths"]["/api/v1/storage/format"]
