"""A VM's snapshots over REST, taken and restored by a real agent on a private libvirtd.

The VMs are placed on the agent's node by hand (label and status.host, as
the operator writes them); the gateway makes each snapshot and restore with
that label, so the agent takes them without the operator. Disk contents are
checked with qemu-io on the VM's own qcow2 file.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import libvirt
import pytest
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import VirtualMachine

from ..agent.conftest import place_vm, remove_domains
from ..agent.test_snapshots import holds_pattern, qemu_io
from ..conftest import Kubectl
from ..support.agent import AgentProcess, qemu_reachable_dir
from ..support.libvirtd import Libvirtd
from ..support.wait import eventually
from .conftest import Users, bearer, login


@pytest.fixture
async def agent(control_plane: ControlPlane, kubectl: Kubectl, namespace: str) -> AsyncIterator[AgentProcess]:
    """A real agent on a private node, against the machine's libvirtd; its domains and finalizers cleaned up."""
    daemon = Libvirtd().start()
    work = qemu_reachable_dir()
    node = f"vtest-snap-{uuid.uuid4().hex[:8]}"
    process = AgentProcess(
        control_plane.kubeconfig, node, work / node, lease_namespace=namespace, libvirt_uri=daemon.uri,
        image_dirs=(work,),
    ).start()  # fmt: skip
    try:
        yield process
    finally:
        process.stop()
        for kind in ("vvm", "vsnap"):
            for obj in kubectl("get", kind, "-n", namespace, "-o", "name", check=False).stdout.split():
                patch = '{"metadata":{"finalizers":null}}'
                kubectl("patch", "-n", namespace, obj, "--type=merge", "-p", patch, check=False)
        conn = libvirt.open(daemon.uri)
        remove_domains(conn, f"{namespace}_")
        conn.close()
        kubectl("delete", "host", node, "--ignore-not-found", "--wait=false", check=False)
        shutil.rmtree(work, ignore_errors=True)
        daemon.stop()


async def placed_vm(kube: Kube, namespace: str, name: str, node: str, **spec: Any) -> VirtualMachine:
    """A VM placed on ``node``, once its agent reports it Running (or Stopped when Halted)."""
    made = await place_vm(kube, namespace, name, node, **spec)
    vms = kube.resources(VirtualMachine)
    phase = "Running" if spec.get("run_strategy", "Running") == "Running" else "Stopped"

    async def reached() -> bool:
        vm = await vms.get(name, namespace)
        return bool(vm.status and vm.status.phase == phase)

    await eventually(reached, 60, f"{name} {phase}")
    return made


async def call(client: Client, method: str, path: str, token: str, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await getattr(client, method)(path, json=body if method == "post" else None, headers=bearer(token))
    return response.status_code, await response.get_json()


async def test_take_list_restore_and_delete_a_snapshot(
    client: Client, users: Users, namespace: str, kube: Kube, kubectl: Kubectl, agent: AgentProcess
) -> None:
    admin = (await login(client, users.admin))["token"]
    viewer = (await login(client, users.viewer))["token"]
    made = await placed_vm(kube, namespace, "box", agent.node_name, run_strategy="Halted",
                            disks=[{"name": "root", "size": "16Mi"}])  # fmt: skip
    disk = agent.storage_dir / (made.metadata.uid or "") / "root.qcow2"
    assert qemu_io(disk, "write -P 0xaa 0 64k").returncode == 0
    base = f"/api/v1/vms/box/snapshots?namespace={namespace}"

    status, body = await call(client, "post", base, viewer, name="nope")
    assert status == 403, body
    status, body = await call(client, "post", base, admin, name="before")
    assert status == 201, body
    view = body["data"]
    assert view["name"] == "before" and view["vm"] == "box" and view["namespace"] == namespace
    assert view["phase"] == "Ready" and view["disks"] == ["root"] and view["host"] == agent.node_name
    assert view["include_memory"] is False and view["memory"] is False and view["creation_time"]
    assert "Ready" in kubectl("get", "vsnap", "before", "-n", namespace).stdout
    status, body = await call(client, "post", base, admin)  # a generated name
    assert status == 201 and body["data"]["name"].startswith("box-snap-"), body
    generated = body["data"]["name"]

    status, body = await call(client, "get", base, viewer)
    assert status == 200, body
    assert [s["name"] for s in body["data"]["items"]] == ["before", generated]

    assert qemu_io(disk, "write -P 0xbb 0 64k").returncode == 0
    status, body = await call(client, "post", f"/api/v1/vms/box/snapshots/before/restore?namespace={namespace}", admin)
    assert status == 200, body
    assert body["data"]["phase"] == "Succeeded" and body["data"]["snapshot"] == "before"
    assert holds_pattern(disk, 0xAA)
    requested = kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout
    assert "RestoreRequested" in requested and users.admin.name in requested

    status, body = await call(client, "delete", f"/api/v1/vms/box/snapshots/before?namespace={namespace}", admin)
    assert status == 200, body

    async def merged() -> bool:
        return "before" not in kubectl("get", "vsnap", "-n", namespace, "-o", "name").stdout

    await eventually(merged, 30, "the snapshot to be merged away")
    status, body = await call(client, "delete", f"/api/v1/vms/box/snapshots/before?namespace={namespace}", admin)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND", body


async def test_refusals_say_why(client: Client, users: Users, namespace: str, kube: Kube, agent: AgentProcess) -> None:
    admin = (await login(client, users.admin))["token"]
    raw = agent.state_dir.parent / "raw.img"  # in the agent's image folder
    raw.write_bytes(b"\0" * 2**20)
    await placed_vm(kube, namespace, "rawbox", agent.node_name, run_strategy="Halted",
                     disks=[{"name": "root", "size": "16Mi"}, {"name": "scratch", "path": str(raw)}])  # fmt: skip
    status, body = await call(client, "post", f"/api/v1/vms/rawbox/snapshots?namespace={namespace}", admin)
    assert status == 422, body
    assert body["status"] == "error" and "scratch" in body["error"]["message"] and "qcow2" in body["error"]["message"]

    await placed_vm(kube, namespace, "live", agent.node_name, disks=[{"name": "root", "size": "16Mi"}])
    base = f"/api/v1/vms/live/snapshots?namespace={namespace}"
    status, body = await call(client, "post", base, admin, name="disks-only")
    assert status == 409 and "includeMemory" in body["error"]["message"], body
    status, body = await call(client, "post", base, admin, name="whole", include_memory=True)
    assert status == 201 and body["data"]["memory"] is True and body["data"]["size_bytes"] > 0, body
    restore = f"/api/v1/vms/live/snapshots/whole/restore?namespace={namespace}"
    status, body = await call(client, "post", restore, admin)
    assert status == 409 and body["error"]["code"] == "CONFLICT", body
    assert "stop the VM first" in body["error"]["message"]
    status, body = await call(client, "post", f"/api/v1/vms/live/snapshots/ghost/restore?namespace={namespace}", admin)
    assert status == 404, body
