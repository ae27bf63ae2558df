"""POST /api/v1/vms/{id}/clone: the clone's resource as kubectl shows it, and every refusal in the envelope.

No agent runs here: the source's phase and a snapshot's readiness are
written by stand-ins (``StandInAgent``, a FAKE of the agent's status writes;
the snapshot's status likewise). The copies themselves are the agent's
tests' business (tests/agent/test_clone.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.kube import Kube
from vapor.model import VirtualMachineSnapshot, VirtualMachineSnapshotStatus

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import StandInAgent, Users, bearer, login
from .test_vms import vm_manifest

MAC = "52:54:00:12:34:56"


@dataclass
class Sources:
    """Makes source VMs in the test's namespace: applied with kubectl, their phase reported by a stand-in agent."""

    client: Client
    kubectl: Kubectl
    kube: Kube
    namespace: str

    async def make(self, token: str, phase: str = "Stopped", **spec: Any) -> str:
        """A VM in ``phase``, once the gateway sees it so; its name."""
        name = f"src-{uuid.uuid4().hex[:6]}"
        self.kubectl.apply(vm_manifest(name, self.namespace, **spec))
        await StandInAgent(self.kube).report(name, self.namespace, phase=phase)

        async def seen() -> bool:
            url = f"/api/v1/vms/{name}?namespace={self.namespace}"
            response = await self.client.get(url, headers=bearer(token))
            return response.status_code == 200 and (await response.get_json())["data"]["phase"] == phase

        await eventually(seen, timeout=10, what="the gateway to see the source VM")
        return name


@pytest.fixture
def sources(client: Client, kubectl: Kubectl, kube: Kube, namespace: str) -> Sources:
    return Sources(client, kubectl, kube, namespace)


async def clone(client: Client, token: str, source: str, namespace: str, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/v1/vms/{source}/clone?namespace={namespace}", json=body, headers=bearer(token))
    return response.status_code, await response.get_json()


def refused(answer: tuple[int, dict[str, Any]], status: int, code: str, *words: str) -> None:
    got, payload = answer
    assert got == status, payload
    assert payload["status"] == "error" and payload["error"]["code"] == code, payload
    for word in words:
        assert word in payload["error"]["message"], payload


async def test_a_clone_has_the_sources_spec_new_macs_its_own_hostname_and_names_its_source(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, sources: Sources
) -> None:
    token = (await login(client, users.admin))["token"]
    source = await sources.make(
        token,
        cpu=2,
        disks=[{"name": "root", "size": "1Gi"}],
        networks=[{"name": "lan", "source": "default", "mac": MAC}],
        firmware="uefi",
        cloudInit={"userData": "#cloud-config\npackages: [curl]\n", "hostname": "golden"},
    )
    status, payload = await clone(
        client, token, source, namespace, name="copy", hostname="copy-1", run_strategy="Running"
    )
    assert status == 201, payload
    view = payload["data"]
    assert view["name"] == "copy" and view["namespace"] == namespace and view["run_strategy"] == "Running"
    assert view["clone_from"] == {"vm": source, "mode": "linked"}
    vm = kubectl.get_json("vvm", "copy", "-n", namespace)
    assert vm["metadata"]["uid"] == view["id"]
    spec = vm["spec"]
    assert spec["cloneFrom"] == {"vm": source, "mode": "linked"}
    assert spec["cpu"] == 2 and spec["memory"] == "64Mi" and spec["firmware"] == "uefi"
    assert spec["disks"] == [{"name": "root", "size": "1Gi", "bus": "virtio", "cdrom": False, "readOnly": False}]
    assert spec["networks"][0]["source"] == "default" and "mac" not in spec["networks"][0]
    assert spec["cloudInit"]["hostname"] == "copy-1"
    assert spec["cloudInit"]["userData"] == "#cloud-config\npackages: [curl]\n"
    shown = kubectl.get_json("vvm", "copy", "-n", namespace, "--show-managed-fields")
    assert f"vapor-gateway:{users.admin.name}" in {m["manager"] for m in shown["metadata"]["managedFields"]}
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    notes = [
        (
            e["regarding"]["name"] if "regarding" in e else e["involvedObject"]["name"],
            e.get("note") or e.get("message") or "",
        )
        for e in events
    ]
    assert any(name == "copy" and users.admin.name in note and source in note for name, note in notes), notes

    # Without a hostname the clone's cloud-init leaves it out (the guest takes the clone's name); full copies asked.
    status, payload = await clone(client, token, source, namespace, name="copy-2", full_copy=True)
    assert status == 201, payload
    spec = kubectl.get_json("vvm", "copy-2", "-n", namespace)["spec"]
    assert "hostname" not in spec["cloudInit"] and spec["runStrategy"] == "Halted"
    assert spec["cloneFrom"] == {"vm": source, "mode": "full"}

    refused(await clone(client, token, source, namespace, name="copy"), 409, "ALREADY_EXISTS", "copy")
    # cloneFrom is fixed once the VM exists (kubectl edits too)
    changed = kubectl(
        "patch",
        "vvm",
        "copy",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cloneFrom":{"vm":"other"}}}',
        check=False,
    )
    assert changed.returncode != 0 and "cloneFrom is fixed" in changed.stderr


async def test_a_running_source_is_cloned_only_from_a_ready_snapshot(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, sources: Sources
) -> None:
    token = (await login(client, users.admin))["token"]
    source = await sources.make(
        token,
        phase="Running",
        runStrategy="Running",
        disks=[{"name": "root", "size": "1Gi"}],
    )
    refused(
        await clone(client, token, source, namespace, name="copy"),
        409,
        "CONFLICT",
        "stop the VM or clone from a snapshot",
    )
    refused(await clone(client, token, source, namespace, name="copy", snapshot="nope"), 404, "NOT_FOUND", "nope")
    snap = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachineSnapshot",
        "metadata": {"name": "before", "namespace": namespace},
        "spec": {"vm": source},
    }
    kubectl.apply(snap)
    refused(await clone(client, token, source, namespace, name="copy", snapshot="before"), 409, "CONFLICT", "not Ready")
    kubectl.apply({**snap, "metadata": {"name": "other-vms", "namespace": namespace}, "spec": {"vm": "someone-else"}})
    refused(
        await clone(client, token, source, namespace, name="copy", snapshot="other-vms"), 404, "NOT_FOUND", "other-vms"
    )
    ready = VirtualMachineSnapshotStatus(phase="Ready")  # as the snapshots' agent would report it (stand-in)
    await sources.kube.resources(VirtualMachineSnapshot).apply_status(
        "before", ready, namespace=namespace, field_manager="test-snapshot-agent-stand-in"
    )
    status, payload = await clone(client, token, source, namespace, name="copy", snapshot="before")
    assert status == 201, payload
    assert kubectl.get_json("vvm", "copy", "-n", namespace)["spec"]["cloneFrom"] == {
        "vm": source,
        "snapshot": "before",
        "mode": "linked",
    }


async def test_clone_refusals(client: Client, users: Users, namespace: str, kubectl: Kubectl, sources: Sources) -> None:
    admin = (await login(client, users.admin))["token"]
    viewer = (await login(client, users.viewer))["token"]
    source = await sources.make(admin, disks=[{"name": "root", "size": "1Gi"}])
    refused(await clone(client, viewer, source, namespace, name="copy"), 403, "PERMISSION_DENIED")
    refused(await clone(client, admin, "nobody", namespace, name="copy"), 404, "NOT_FOUND", "nobody")
    refused(await clone(client, admin, source, namespace, name="Not_A_Name"), 400, "INVALID_INPUT")
    refused(await clone(client, admin, source, namespace, name="copy", run_strategy="Paused"), 400, "INVALID_INPUT")
    shared = await sources.make(admin, disks=[{"name": "data", "path": "/var/lib/vapor/images/data.qcow2"}])
    refused(
        await clone(client, admin, shared, namespace, name="copy"), 409, "CONFLICT", "/var/lib/vapor/images/data.qcow2"
    )
    assert kubectl("get", "vvm", "copy", "-n", namespace, check=False).returncode != 0  # nothing was made


async def test_an_image_is_in_use_by_a_linked_clone_of_a_vm_on_it(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, sources: Sources
) -> None:
    token = (await login(client, users.admin))["token"]
    image = f"img-{uuid.uuid4().hex[:8]}"
    body = {"name": image, "source": {"http": {"url": f"https://images.example/{image}.qcow2"}}, "checksum": "0" * 64}
    assert (await client.post("/api/v1/images", json=body, headers=bearer(token))).status_code == 201
    try:
        source = await sources.make(token, disks=[{"name": "root", "image": image}])
        status, payload = await clone(client, token, source, namespace, name="copy")
        assert status == 201, payload
        kubectl("delete", "vvm", source, "-n", namespace)
        response = await client.delete(f"/api/v1/images/{image}", headers=bearer(token))
        refused((response.status_code, await response.get_json()), 409, "CONFLICT", f"{namespace}/copy")
    finally:
        kubectl("delete", "image", image, "--ignore-not-found", "--wait=false", check=False)
