"""Migrations over REST: asking for one, following it, cancelling it, and every refusal.

No operator or agent runs here: Hosts and VMs get their status from a FAKE
stand-in (the agents' and operator's status writes, field manager
test-stand-in-*), and what the operator would write on a Migration is written
the same way where a test reads it back. The operator's side is tested in
tests/operator/test_migration.py, the whole path in tests/migration.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.kube import Kube
from vapor.model import Host, HostStatus, Migration, MigrationStatus
from vapor.model.names import REQUESTED_BY_ANNOTATION

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import StandInAgent, Users, bearer, login

STAND_IN = "test-stand-in-operator"


@dataclass
class World:
    """Two Ready hosts, one NotReady, one in maintenance, and VMs on the first."""

    src: str
    dst: str
    dst_id: str
    src_id: str
    down: str
    resting: str
    ns: str


@pytest.fixture
def host_names(kubectl: Kubectl) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    if names:
        kubectl("delete", "host", *names, "--wait=false", check=False)


async def _host(
    kube: Kube, kubectl: Kubectl, names: list[str], base: str, ready: bool, maintenance: bool = False
) -> tuple[str, str]:
    name = f"{base}-{uuid.uuid4().hex[:8]}"
    host_id = str(uuid.uuid4())
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": name},
                   "spec": {"maintenance": maintenance}})  # fmt: skip
    names.append(name)
    status = {
        "id": host_id,
        "capacity": {"cpu": 8, "memory": "8Gi"},
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "Test",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }  # fmt: skip
    await kube.resources(Host).patch_status(
        name, HostStatus.model_validate(status), field_manager="test-stand-in-agent"
    )
    return name, host_id


async def _vm(kube: Kube, kubectl: Kubectl, ns: str, name: str, host: str | None, phase: str) -> str:
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachine",
                   "metadata": {"name": name, "namespace": ns}, "spec": {"memory": "64Mi"}})  # fmt: skip
    status: dict[str, Any] = {"phase": phase}
    if host:
        status["host"] = host
    await StandInAgent(kube).report(name, ns, **status)
    return str(kubectl.get_json("vvm", name, "-n", ns)["metadata"]["uid"])


@pytest.fixture
async def world(kube: Kube, kubectl: Kubectl, namespace: str, host_names: list[str]) -> World:
    src, src_id = await _host(kube, kubectl, host_names, "src", True)
    dst, dst_id = await _host(kube, kubectl, host_names, "dst", True)
    down, _ = await _host(kube, kubectl, host_names, "down", False)
    resting, _ = await _host(kube, kubectl, host_names, "resting", True, maintenance=True)
    await _vm(kube, kubectl, namespace, "web", src, "Running")
    await _vm(kube, kubectl, namespace, "idle", src, "Stopped")
    await _vm(kube, kubectl, namespace, "fresh", None, "Pending")
    return World(src, dst, dst_id, src_id, down, resting, namespace)


async def _wait_cached(client: Client, token: str, path: str) -> None:
    async def seen() -> bool:
        response = await client.get(path, headers=bearer(token))
        return response.status_code == 200

    await eventually(seen, 20, what=path)


async def _migrate(client: Client, token: str, w: World, vm: str = "web", **body: Any) -> Any:
    await _wait_cached(client, token, f"/api/v1/vms/{vm}?namespace={w.ns}")
    return await client.post(f"/api/v1/vms/{vm}/migrate?namespace={w.ns}", json=body, headers=bearer(token))


async def test_migrate_creates_a_migration_and_get_follows_it(
    client: Client, users: Users, world: World, kube: Kube, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    await _wait_cached(client, token, f"/api/v1/hosts/{world.dst}")
    response = await _migrate(
        client, token, world, destination_host_id=world.dst_id, live=True, persistent=True,
        undefine_source=True, copy_storage="all", bandwidth_mib_per_second=100,
    )  # fmt: skip
    body = await response.get_json()
    assert response.status_code == 201, body
    assert body["status"] == "success"
    data = body["data"]
    assert data["status"] == "initiated" and data["migration_id"]
    assert data["destination_host_name"] == world.dst and data["name"].startswith("web-")

    # What kubectl shows: the resource, who asked, and the field manager.
    obj = kubectl.get_json("vmig", data["name"], "-n", world.ns, "--show-managed-fields")
    assert obj["metadata"]["uid"] == data["migration_id"]
    assert obj["spec"]["vmName"] == "web" and obj["spec"]["destinationHost"] == world.dst
    assert obj["spec"]["copyStorage"] == "all" and obj["spec"]["bandwidthMiBPerSecond"] == 100
    assert obj["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == users.admin.name
    assert f"vapor-gateway:{users.admin.name}" in {m["manager"] for m in obj["metadata"]["managedFields"]}

    # Read at once by id, and by name.
    got = await client.get(f"/api/v1/migrations/{data['migration_id']}", headers=bearer(token))
    view = (await got.get_json())["data"]
    assert view["phase"] == "Pending" and view["vm_name"] == "web" and view["vm_id"] == data["vm_id"]
    assert view["destination_host_id"] == world.dst_id and view["requested_by"] == users.admin.name
    by_name = await client.get(f"/api/v1/migrations/{data['name']}?namespace={world.ns}", headers=bearer(token))
    assert (await by_name.get_json())["data"]["id"] == data["migration_id"]

    # What the operator and the source agent write shows up (stand-in writes).
    await kube.resources(Migration).patch_status(
        data["name"],
        MigrationStatus.model_validate(
            {
                "phase": "Running",
                "sourceHost": world.src,
                "targetHost": world.dst,
                "startTime": "2026-01-01T10:00:00Z",
                "progress": {
                    "percent": 42,
                    "dataTotalBytes": 1000,
                    "dataProcessedBytes": 420,
                    "dataRemainingBytes": 580,
                    "memoryIteration": 2,
                },
            }
        ),
        namespace=world.ns,
        field_manager=STAND_IN,
    )

    async def running() -> dict[str, Any] | None:
        r = await client.get(f"/api/v1/migrations/{data['migration_id']}", headers=bearer(token))
        v = (await r.get_json())["data"]
        return v if v["phase"] == "Running" else None

    view = await eventually(running, 20, what="Running in the cache")
    assert view["progress"]["percent"] == 42
    assert (view["progress"]["data_processed"], view["progress"]["data_remaining"]) == (420, 580)
    assert view["progress"]["memory_iteration"] == 2
    assert view["source_host_id"] == world.src_id and view["source_host_name"] == world.src
    assert view["start_time"].startswith("2026-01-01T10:00:00")

    # The list, with its filters.
    viewer = (await login(client, users.viewer))["token"]
    listed = (await (await client.get("/api/v1/migrations", headers=bearer(viewer))).get_json())["data"]
    assert data["migration_id"] in {m["id"] for m in listed["migrations"]}
    for query, expected in (
        (f"vm_id={data['vm_id']}", 1),
        (f"host_id={world.src_id}", 1),
        (f"host_id={world.dst}&phase=Running", 1),
        ("phase=Succeeded", 0),
        ("active=false", 0),
        ("active=true", 1),
    ):
        r = await client.get(f"/api/v1/migrations?namespace={world.ns}&{query}", headers=bearer(viewer))
        answer = await r.get_json()
        assert r.status_code == 200, (query, answer)
        assert answer["data"]["count"] == expected, query


async def test_cancel_and_delete_set_spec_cancel_and_finished_ones_conflict(
    client: Client, users: Users, world: World, kube: Kube, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    await _wait_cached(client, token, f"/api/v1/hosts/{world.dst}")
    first = (await (await _migrate(client, token, world, destination_host_id=world.dst)).get_json())["data"]
    bad = await client.post(
        f"/api/v1/migrations/{first['migration_id']}/cancel", json={"why": "typo"}, headers=bearer(token)
    )
    assert bad.status_code == 400 and (await bad.get_json())["error"]["code"] == "INVALID_INPUT"
    assert not kubectl.get_json("vmig", first["name"], "-n", world.ns)["spec"].get("cancel")
    response = await client.post(
        f"/api/v1/migrations/{first['migration_id']}/cancel", json={"reason": "window closed"}, headers=bearer(token)
    )
    assert response.status_code == 200, await response.get_json()
    events = kubectl.get_json("events.events.k8s.io", "-n", world.ns)["items"]
    assert any(e["reason"] == "CancelRequested" and "window closed" in e["note"] for e in events)
    assert (await response.get_json())["data"]["cancel_requested"] is True
    assert kubectl.get_json("vmig", first["name"], "-n", world.ns)["spec"]["cancel"] is True

    # A cancelled one no longer blocks the VM; DELETE does the same as cancel.
    second = (await (await _migrate(client, token, world, vm="idle", live=False)).get_json())["data"]
    response = await client.delete(f"/api/v1/migrations/{second['migration_id']}", headers=bearer(token))
    assert response.status_code == 200
    assert kubectl.get_json("vmig", second["name"], "-n", world.ns)["spec"]["cancel"] is True

    # Finished: nothing to cancel.
    await kube.resources(Migration).patch_status(
        first["name"], MigrationStatus(phase="Cancelled"), namespace=world.ns, field_manager=STAND_IN
    )

    async def finished() -> bool:
        r = await client.get(f"/api/v1/migrations/{first['migration_id']}", headers=bearer(token))
        return bool((await r.get_json())["data"]["phase"] == "Cancelled")

    await eventually(finished, 20, what="Cancelled in the cache")
    for method in ("post", "delete"):
        suffix = "/cancel" if method == "post" else ""
        r = await getattr(client, method)(f"/api/v1/migrations/{first['migration_id']}{suffix}", headers=bearer(token))
        error = (await r.get_json())["error"]
        assert r.status_code == 409 and error["code"] == "CONFLICT" and "already finished" in error["message"]

    # A viewer may read but not cancel.
    viewer = (await login(client, users.viewer))["token"]
    r = await client.post(f"/api/v1/migrations/{second['migration_id']}/cancel", headers=bearer(viewer))
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "PERMISSION_DENIED"


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("copy_storage unknown", {"copy_storage": "some"}, 400, "INVALID_INPUT"),
    ("live not a bool", {"live": "yes"}, 400, "INVALID_INPUT"),
    ("unknown field", {"destination": "x"}, 400, "INVALID_INPUT"),
    ("negative bandwidth", {"bandwidth_mib_per_second": -1}, 400, "INVALID_INPUT"),
    ("downtime zero", {"max_downtime_ms": 0}, 400, "INVALID_INPUT"),
    ("timeout zero", {"progress_timeout_seconds": 0}, 400, "INVALID_INPUT"),
    ("post-copy offline", {"post_copy": True, "live": False}, 400, "INVALID_INPUT"),
    ("empty destination", {"destination_host_id": ""}, 400, "INVALID_INPUT"),
    ("unknown destination", {"destination_host_id": "no-such-host"}, 404, "NOT_FOUND"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_bodies_are_refused(
    client: Client,
    users: Users,
    world: World,
    kubectl: Kubectl,
    case: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    token = (await login(client, users.admin))["token"]
    response = await _migrate(client, token, world, **body)
    payload = await response.get_json()
    assert response.status_code == status, payload
    assert payload["status"] == "error" and payload["error"]["code"] == code, payload
    assert kubectl("get", "vmig", "-n", world.ns, "-o", "name").stdout.strip() == ""  # nothing half-done


async def test_refusals_that_need_the_fleet(client: Client, users: Users, world: World, kubectl: Kubectl) -> None:
    token = (await login(client, users.admin))["token"]
    for host in (world.dst, world.down, world.resting, world.src):
        await _wait_cached(client, token, f"/api/v1/hosts/{host}")
    cases: list[tuple[str, str, dict[str, Any], int, str, str]] = [
        ("unknown vm", "ghost", {}, 404, "NOT_FOUND", "ghost"),
        ("same host", "web", {"destination_host_id": world.src_id}, 409, "CONFLICT", "already runs on"),
        ("not running for live", "idle", {"destination_host_id": world.dst}, 409, "CONFLICT", "needs it running"),
        ("not placed", "fresh", {"live": False}, 409, "CONFLICT", "not placed"),
        ("destination NotReady", "web", {"destination_host_id": world.down}, 409, "CONFLICT", "not Ready"),
        ("destination in maintenance", "web", {"destination_host_id": world.resting}, 409, "CONFLICT", "maintenance"),
    ]
    for case, vm, body, status, code, words in cases:
        if vm != "ghost":
            await _wait_cached(client, token, f"/api/v1/vms/{vm}?namespace={world.ns}")
        response = await client.post(f"/api/v1/vms/{vm}/migrate?namespace={world.ns}", json=body, headers=bearer(token))
        payload = await response.get_json()
        assert response.status_code == status, (case, payload)
        assert payload["error"]["code"] == code and words in payload["error"]["message"], (case, payload)
    assert kubectl("get", "vmig", "-n", world.ns, "-o", "name").stdout.strip() == ""

    # The second migration of a VM that is already moving.
    first = await client.post(
        f"/api/v1/vms/web/migrate?namespace={world.ns}", json={"destination_host_id": world.dst}, headers=bearer(token)
    )
    assert first.status_code == 201
    again = await client.post(
        f"/api/v1/vms/web/migrate?namespace={world.ns}", json={"destination_host_id": world.dst}, headers=bearer(token)
    )
    error = (await again.get_json())["error"]
    assert again.status_code == 409 and error["code"] == "CONFLICT" and "already being moved" in error["message"]

    # Unknown migrations, a bad query, and a viewer asking to migrate.
    r = await client.get("/api/v1/migrations/does-not-exist", headers=bearer(token))
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "NOT_FOUND"
    r = await client.post(f"/api/v1/migrations/{uuid.uuid4()}/cancel", headers=bearer(token))
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "NOT_FOUND"
    r = await client.get("/api/v1/migrations?phase=Flying", headers=bearer(token))
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "INVALID_INPUT"
    viewer = (await login(client, users.viewer))["token"]
    r = await client.post(f"/api/v1/vms/web/migrate?namespace={world.ns}", json={}, headers=bearer(viewer))
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "PERMISSION_DENIED"
    r = await client.get("/api/v1/migrations")
    assert r.status_code == 401 and (await r.get_json())["error"]["code"] == "UNAUTHORIZED"
    r = await client.post(
        f"/api/v1/vms/web/migrate?namespace={world.ns}",
        data="{not json",
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "INVALID_INPUT"


async def test_a_vm_with_snapshots_is_refused_saying_why(
    client: Client, users: Users, world: World, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachineSnapshot",
                   "metadata": {"name": "before-upgrade", "namespace": world.ns}, "spec": {"vm": "web"}})  # fmt: skip
    response = await _migrate(client, token, world, destination_host_id=world.dst)
    error = (await response.get_json())["error"]
    assert response.status_code == 409 and error["code"] == "CONFLICT", error
    assert "before-upgrade" in error["message"] and "delete them first" in error["message"]
    assert kubectl("get", "vmig", "-n", world.ns, "-o", "name").stdout.strip() == ""
    kubectl("delete", "vsnap", "before-upgrade", "-n", world.ns)  # no agent runs: no finalizer holds it
    response = await _migrate(client, token, world, destination_host_id=world.dst)
    assert response.status_code == 201, await response.get_json()


async def test_openapi_documents_the_migration_endpoints(client: Client) -> None:
    spec = json.loads(await (await client.get("/openapi.json")).get_data())
    paths = spec["paths"]
    assert "post" in paths["/api/v1/vms/{vm_id}/migrate"]
    assert "get" in paths["/api/v1/migrations"] and "get" in paths["/api/v1/migrations/{migration_id}"]
    assert "delete" in paths["/api/v1/migrations/{migration_id}"]
    assert "post" in paths["/api/v1/migrations/{migration_id}/cancel"]
    responses = paths["/api/v1/vms/{vm_id}/migrate"]["post"]["responses"]
    assert {"201", "400", "404", "409"} <= set(responses)
    targets = paths["/api/v1/vms/{vm_id}/migration-targets"]["get"]  # Vapor's, beyond the contract
    assert {"200", "401", "404"} <= set(targets["responses"])
    assert {p["name"] for p in targets["parameters"]} >= {"vm_id", "namespace", "copy_storage", "live"}


async def test_a_draining_host_shows_its_progress(client: Client, users: Users, world: World, kube: Kube) -> None:
    drain = {"phase": "Draining", "remaining": 2, "message": "2 VirtualMachine(s) still on the host"}
    await kube.resources(Host).patch_status(
        world.resting, HostStatus.model_validate({"drain": drain}), field_manager=STAND_IN
    )
    token = (await login(client, users.viewer))["token"]

    async def shown() -> dict[str, Any] | None:
        r = await client.get(f"/api/v1/hosts/{world.resting}", headers=bearer(token))
        data = (await r.get_json()).get("data") or {}
        return data if data.get("drain") else None

    host = await eventually(shown, 20, what="drain in the host view")
    assert host["maintenance"] is True
    assert host["drain"] == {"phase": "Draining", "remaining": 2, "message": "2 VirtualMachine(s) still on the host"}


async def _report(kube: Kube, host: str, field_manager: str, **status: Any) -> None:
    """Write part of a Host's status as its agent (hypervisor) or the operator (allocatable, allocated) would."""
    await kube.resources(Host).patch_status(host, HostStatus.model_validate(status), field_manager=field_manager)


def _cpu(vendor: str = "Intel", model: str = "Skylake-Server") -> dict[str, Any]:
    return {"arch": "x86_64", "cpuModel": model, "cpuVendor": vendor, "cpuFeatures": ["sse4.2", "avx2"]}


async def test_migration_targets_say_which_hosts_can_take_the_vm_and_why_not(
    client: Client, users: Users, world: World, kube: Kube, kubectl: Kubectl, host_names: list[str]
) -> None:
    # the source and dst report the same CPU; "full" has no room left by the operator's own account; "amd" has
    # room but a CPU of another vendor
    full, _ = await _host(kube, kubectl, host_names, "full", True)
    amd, _ = await _host(kube, kubectl, host_names, "amd", True)
    for name, vendor in ((world.src, "Intel"), (world.dst, "Intel"), (full, "Intel"), (amd, "AMD")):
        await _report(kube, name, "test-stand-in-agent", hypervisor=_cpu(vendor))
    given = {"cpu": 16, "memory": 8 * 2**30}
    await _report(kube, full, STAND_IN, allocatable=given, allocated={"cpu": 16, "memory": 2**30})
    token = (await login(client, users.viewer))["token"]  # a read: the viewer may ask

    async def reported(host: str, field: str) -> bool:
        r = await client.get(f"/api/v1/hosts/{host}", headers=bearer(token))
        return r.status_code == 200 and (await r.get_json())["data"][field] is not None

    written = ((world.src, "hypervisor"), (world.dst, "hypervisor"), (amd, "hypervisor"), (full, "allocated"))
    for host, field in written:
        await eventually(functools.partial(reported, host, field), 20, what=f"{field} of {host} in the gateway's cache")
    r = await client.get(f"/api/v1/vms/web/migration-targets?namespace={world.ns}", headers=bearer(token))
    body = await r.get_json()
    assert r.status_code == 200, body
    assert body["data"]["vm_name"] == "web" and body["data"]["source_host_name"] == world.src
    targets = {t["host_name"]: t for t in body["data"]["targets"]}

    def checks(host: str) -> dict[str, tuple[bool | None, str]]:
        return {c["name"]: (c["ok"], c["message"]) for c in targets[host]["checks"]}

    ok = targets[world.dst]
    assert ok["can_take"] is True and ok["refusal"] is None and ok["host_id"] == world.dst_id
    assert checks(world.dst) == {
        "DestinationCapacity": (True, f"{world.dst} has 80 CPU and 8192Mi free"),  # 8 CPUs x the default ratio 10
        "CPUCompatible": (True, "both hosts have CPU model Skylake-Server"),
        "StorageCompatible": (True, "the VM has no disks"),
    }
    assert targets[full]["can_take"] is False
    assert checks(full)["DestinationCapacity"] == (False, f"{full}: 0 CPU free, 1 needed")
    assert "0 CPU free, 1 needed" in targets[full]["refusal"]
    assert targets[amd]["can_take"] is False
    assert checks(amd)["CPUCompatible"] == (False, "source CPU is Intel, destination CPU is AMD")
    assert checks(amd)["DestinationCapacity"][0] is True
    # ruled out before the checks: one line saying why
    for host, why in (
        (world.src, "destination and source are the same host"),
        (world.down, f"destination host {world.down} is not Ready"),
        (world.resting, f"destination host {world.resting} is in maintenance"),
    ):
        assert targets[host]["can_take"] is False
        assert [(c["name"], c["ok"]) for c in targets[host]["checks"]] == [("Refused", False)]
        assert why in targets[host]["checks"][0]["message"]


async def test_migration_targets_follow_the_storage_choice_and_refuse_an_unknown_vm(
    client: Client, users: Users, world: World, kube: Kube, kubectl: Kubectl
) -> None:
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachine",
                   "metadata": {"name": "disky", "namespace": world.ns},
                   "spec": {"memory": "64Mi", "disks": [{"name": "root", "size": "1Gi"}]}})  # fmt: skip
    await StandInAgent(kube).report("disky", world.ns, phase="Running", host=world.src)
    token = (await login(client, users.viewer))["token"]
    await _wait_cached(client, token, f"/api/v1/vms/disky?namespace={world.ns}")

    async def storage(copy: str) -> tuple[bool | None, str]:
        path = f"/api/v1/vms/disky/migration-targets?namespace={world.ns}&copy_storage={copy}"
        r = await client.get(path, headers=bearer(token))
        body = await r.get_json()
        assert r.status_code == 200, body
        assert body["data"]["copy_storage"] == copy
        (dst,) = [t for t in body["data"]["targets"] if t["host_name"] == world.dst]
        (check,) = [(c["ok"], c["message"]) for c in dst["checks"] if c["name"] == "StorageCompatible"]
        return check

    assert await storage("none") == (
        False,
        "disk(s) root are local images of the source host; set copyStorage to all or incremental",
    )
    assert await storage("all") == (True, "1 disk(s) copied to the destination (copyStorage all)")

    r = await client.get(f"/api/v1/vms/nope/migration-targets?namespace={world.ns}", headers=bearer(token))
    body = await r.get_json()
    assert r.status_code == 404 and body["status"] == "error" and body["error"]["code"] == "NOT_FOUND", body
    assert "'nope'" in body["error"]["message"]
    r = await client.get(f"/api/v1/vms/disky/migration-targets?namespace={world.ns}&copy_storage=some")
    assert r.status_code == 401  # no token
    r = await client.get(
        f"/api/v1/vms/disky/migration-targets?namespace={world.ns}&copy_storage=some", headers=bearer(token)
    )
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "INVALID_INPUT"
