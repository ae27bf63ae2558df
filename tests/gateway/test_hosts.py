"""Hosts over REST: the inventory the agent wrote, the connection status, look-up by id and by name.

No agent runs here: a stand-in (a FAKE of the agent's Host status writes) fills in the inventory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from quart.typing import TestClientProtocol as Client

from vapor.kube import Kube
from vapor.model import Host, HostStatus

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import Users, bearer, login

INVENTORY: dict[str, Any] = {
    "hostname": "node-1.example.org",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-18-amd64",
    "uptimeSeconds": 8640000,
    "loadAverage": [1.5, 1.2, 0.9],
    "cpu": {"model": "Example CPU", "cores": 4, "threads": 8, "usagePercent": 12.5},
    "memory": {"total": 16 * 2**30, "available": 8 * 2**30, "used": 8 * 2**30, "usagePercent": 50.0},
    "interfaces": [
        {
            "name": "eth0",
            "mac": "00:11:22:33:44:55",
            "mtu": 1500,
            "state": "up",
            "type": "ethernet",
            "addresses": ["192.168.1.100/24"],
            "statistics": {"rxBytes": 1048576, "txBytes": 524288, "rxPackets": 1000, "txPackets": 500},
        }
    ],
    "disks": [
        {
            "name": "sda",
            "path": "/dev/sda",
            "size": 107374182400,
            "type": "ssd",
            "partitions": [{"name": "sda1", "path": "/dev/sda1", "size": 536870912, "mountPoint": "/boot"}],
        }
    ],
    "hypervisor": {"driver": "QEMU", "kvm": True},
    "capacity": {"cpu": 8, "memory": "12Gi"},
    "allocatable": {"cpu": 80, "memory": 12 * 2**30},
    "allocated": {"cpu": 3, "memory": 3 * 2**30},
    "vmCount": 2,
    "syncCursor": 1716999901,
}


async def _host(kube: Kube, kubectl: Kubectl, name: str, ready: str | None, host_id: str) -> None:
    """Create a Host and write its status as its agent would (FAKE stand-in for the agent)."""
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": name}, "spec": {}})
    status: dict[str, Any] = {"id": host_id, **INVENTORY}
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": ready, "reason": "Test", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
    await kube.resources(Host).patch_status(
        name, HostStatus.model_validate(status), field_manager="test-stand-in-agent"
    )


async def test_hosts_list_and_get_by_id_and_name(
    client: Client,
    users: Users,
    kube: Kube,
    kubectl: Kubectl,
    unique: Callable[[str], str],
    cluster_objects: list[str],
) -> None:
    names = {s: unique(f"node-{s.lower()}") for s in ("True", "False", "None")}
    ids = {s: str(uuid.uuid4()) for s in names}
    for ready, name in names.items():
        cluster_objects.append(f"host/{name}")
        await _host(kube, kubectl, name, None if ready == "None" else ready, ids[ready])
    token = (await login(client, users.viewer))["token"]

    async def listed() -> dict[str, dict[str, Any]] | None:
        body = await (await client.get("/api/v1/hosts", headers=bearer(token))).get_json()
        found = {h["name"]: h for h in body["data"]["hosts"] if h["name"] in names.values()}
        done = len(found) == 3 and all(h["sync_cursor"] for h in found.values())
        return found if done else None

    hosts = await eventually(listed)
    assert hosts[names["True"]]["status"] == "connected"
    assert hosts[names["False"]]["status"] == "disconnected"
    assert hosts[names["None"]]["status"] == "unknown"
    host = hosts[names["True"]]
    assert host["id"] == ids["True"]
    assert host["hostname"] == "node-1.example.org"
    assert host["sync_cursor"] == 1716999901
    assert host["uptime"] == 8640000
    assert host["load_average"] == [1.5, 1.2, 0.9]
    assert host["cpu"]["usage_percent"] == 12.5
    assert host["memory"]["total"] == 16 * 2**30
    assert host["interfaces"][0]["statistics"] == {
        "rx_bytes": 1048576,
        "tx_bytes": 524288,
        "rx_packets": 1000,
        "tx_packets": 500,
    }
    assert host["disks"][0]["partitions"][0]["mount_point"] == "/boot"
    assert host["hypervisor"]["kvm"] is True
    assert host["capacity"] == {"cpu": 8, "memory": "12Gi"}
    assert host["allocatable"] == {"cpu": 80, "memory": 12 * 2**30}
    assert host["allocated"] == {"cpu": 3, "memory": 3 * 2**30}
    assert host["vm_count"] == 2
    assert host["maintenance"] is False
    for key in (ids["True"], names["True"]):
        response = await client.get(f"/api/v1/hosts/{key}", headers=bearer(token))
        body = await response.get_json()
        assert response.status_code == 200
        assert body["status"] == "success"
        assert body["data"] == host


async def test_maintenance_shows(
    client: Client,
    users: Users,
    kube: Kube,
    kubectl: Kubectl,
    unique: Callable[[str], str],
    cluster_objects: list[str],
) -> None:
    name = unique("node-m")
    cluster_objects.append(f"host/{name}")
    await _host(kube, kubectl, name, "True", str(uuid.uuid4()))
    kubectl("patch", "host", name, "--type=merge", "-p", '{"spec":{"maintenance":true}}')
    token = (await login(client, users.viewer))["token"]

    async def in_maintenance() -> bool:
        response = await client.get(f"/api/v1/hosts/{name}", headers=bearer(token))
        return response.status_code == 200 and (await response.get_json())["data"]["maintenance"] is True

    await eventually(in_maintenance)
