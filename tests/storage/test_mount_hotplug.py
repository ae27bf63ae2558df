"""A disk attached while the agent runs: listed and mountable at once, not at the next inventory scan.

The agent looks at its inventory only every minute here (``--scan-interval
60``): what makes the new loop device mountable at once is the agent deciding
about the device it sees, and what makes it listed soon is the agent following
the kernel's block-device events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from quart.typing import TestClientProtocol as Client

from vapor.agent.host import format as _format

from ..gateway.conftest import Users
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .loops import LoopDevices, is_mounted
from .test_mounts import admin_headers, disks, partition_of

SOON = 10.0  # well under the scan interval: only an event can explain it


async def agent_without_scans(
    agent_factory: Callable[..., AgentProcess], node: str, client: Client, users: Users
) -> dict[str, str]:
    """An agent that looks at its inventory once a minute, registered with its disks; an admin's headers."""
    agent_factory(node, scan_interval=60.0, extra_args=("--api-bind", "")).start()
    headers = await admin_headers(client, users)
    await eventually(lambda: disks(client, headers, node), 60, "the host registered with its disks")
    return headers


async def test_a_disk_attached_after_the_agent_started_is_mounted_through_rest_at_once(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
) -> None:
    node = mounts_of_node
    headers = await agent_without_scans(agent_factory, node, client, users)

    device = loops.make()
    _format.format_device(device, "ext4", "HOTPLUG", _format.gather_facts())
    target = tmp_path / "hotplug"
    body = {"device": device, "mount_point": str(target), "filesystem": "ext4"}
    response = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
    answer = await response.get_json()
    assert response.status_code == 200, answer
    assert answer["data"]["phase"] == "Mounted" and is_mounted(target)

    async def listed_as_mounted() -> bool:
        part = await partition_of(client, headers, node, device)
        return bool(part and part["mount_point"] == str(target))

    await eventually(listed_as_mounted, SOON, f"{device} listed, mounted on {target}")


async def test_a_device_the_host_does_not_have_is_not_found_and_leaves_no_mount(
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
    tmp_path: Path,
) -> None:
    node = mounts_of_node
    headers = await agent_without_scans(agent_factory, node, client, users)
    body = {"device": "/dev/vtest-no-such-disk", "mount_point": str(tmp_path / "never"), "filesystem": "ext4"}
    response = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
    answer = await response.get_json()
    assert (response.status_code, answer["error"]["code"]) == (404, "NOT_FOUND"), answer
    assert "/dev/vtest-no-such-disk" in answer["error"]["message"]
    listed = await client.get(f"/api/v1/storage/disks?host={node}", headers=headers)
    assert listed.status_code == 200
    again = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
    assert again.status_code == 404, await again.get_json()  # no Failed Mount was left behind to say ALREADY_EXISTS


async def test_a_disk_attached_or_detached_shows_in_the_listing_within_seconds(
    loops: LoopDevices,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
) -> None:
    node = mounts_of_node
    headers = await agent_without_scans(agent_factory, node, client, users)

    async def listed(device: str) -> bool:
        return any(d["path"] == device for d in await disks(client, headers, node))

    device = loops.make()
    await eventually(lambda: listed(device), SOON, f"{device} listed after it was attached")
    loops.cleanup()  # detached
    await eventually(lambda: not_(listed(device)), SOON, f"{device} gone from the listing after it was detached")


async def not_(listed: Awaitable[bool]) -> bool:
    return not await listed
