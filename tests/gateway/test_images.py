"""Images over REST: create, list with each host's progress, read, delete, the upload's limits; checked with kubectl.

No operator and no agent run here: the hosts' entries of an Image's status
come from the named stand-in tests/support/image_agents.py (the agents'
server-side apply). The upload streamed to a real agent is in
tests/gateway/test_image_upload.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes import config
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.gateway import create_app
from vapor.model.names import REQUESTED_BY_ANNOTATION

from ..conftest import Kubectl
from ..support.image_agents import ImageAgentsStandIn
from ..support.wait import eventually
from .conftest import Users, bearer, login

SHA = "0123456789abcdef" * 4


@pytest.fixture
def names(kubectl: Kubectl) -> Iterator[list[str]]:
    """Image names for one test (cluster-wide, so unique), each removed after it."""
    made: list[str] = []
    yield made
    for name in made:
        kubectl("delete", "image", name, "--ignore-not-found", "--wait=false", check=False)


def fresh(names: list[str], what: str = "img") -> str:
    name = f"{what}-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def http_body(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "source": {"http": {"url": f"https://images.example/{name}.qcow2"}}, "checksum": SHA, **more}


async def test_create_list_get_and_delete_are_what_kubectl_sees(
    client: Client, users: Users, kubectl: Kubectl, names: list[str], control_plane: ControlPlane
) -> None:
    token = (await login(client, users.admin))["token"]
    name = fresh(names)
    response = await client.post(
        "/api/v1/images", json=http_body(name, format="qcow2", prefetch={"host_selector": {"zone": "a"}}),
        headers=bearer(token),
    )  # fmt: skip
    created = (await response.get_json())["data"]
    assert response.status_code == 201, created
    assert created["phase"] == "Pending" and created["source"]["http"]["url"].endswith(f"{name}.qcow2")
    image = kubectl.get_json("image", name)
    assert image["metadata"]["uid"] == created["id"]
    assert image["spec"] == {
        "source": {"http": {"url": f"https://images.example/{name}.qcow2"}},
        "checksum": SHA,
        "format": "qcow2",
        "prefetch": {"hostSelector": {"zone": "a"}},
    }
    assert image["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == users.admin.name
    # the hosts' progress, as their agents report it, is in the list and in the one
    agents = ImageAgentsStandIn(config.new_client_from_config(str(control_plane.kubeconfig)))
    agents.report(name, "node-1", "Fetching", bytes=300, totalBytes=1000, percent=30)

    async def listed() -> dict[str, Any] | None:
        response = await client.get("/api/v1/images", headers=bearer(token))
        shown = next(i for i in (await response.get_json())["data"]["images"] if i["name"] == name)
        return shown if shown["hosts"] else None

    shown = await eventually(listed, timeout=10, what="the host's entry in the list")
    assert shown["hosts"][0] == {
        **shown["hosts"][0],
        "host": "node-1",
        "phase": "Fetching",
        "percent": 30,
        "bytes": 300,
    }
    one = await client.get(f"/api/v1/images/{name}", headers=bearer(token))
    assert (await one.get_json())["data"]["hosts"][0]["total_bytes"] == 1000
    # a second image of that name is a conflict with its own code
    again = await client.post("/api/v1/images", json=http_body(name), headers=bearer(token))
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "ALREADY_EXISTS"
    deleted = await client.delete(f"/api/v1/images/{name}", headers=bearer(token))
    assert deleted.status_code == 200, await deleted.get_json()
    assert "NotFound" in kubectl("get", "image", name, check=False).stderr


BAD_BODIES = {
    "http without checksum": ({"source": {"http": {"url": "https://x.example/a.qcow2"}}}, "checksum"),
    "a sha256 that is not one": ({"source": {"upload": {}}, "checksum": "abc"}, "checksum"),
    "a sha256 in capitals": ({"source": {"upload": {}}, "checksum": SHA.upper()}, "checksum"),
    "an unknown format": ({"source": {"upload": {}}, "format": "vmdk"}, "format"),
    "two sources": ({"source": {"upload": {}, "host_path": {"path": "/var/lib/vapor/images/a.raw"}}}, "source"),
    "no source": ({"source": {}}, "source"),
    "a relative host path": ({"source": {"host_path": {"path": "images/a.raw"}}}, "source.host_path.path"),
    "a URL that is not http": ({"source": {"http": {"url": "ftp://x/a"}}, "checksum": SHA}, "source.http.url"),
    "an unknown field": ({"source": {"upload": {}}, "size": 3}, "size"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
async def test_bad_bodies_are_refused_naming_the_field_and_nothing_is_made(
    client: Client, users: Users, kubectl: Kubectl, names: list[str], case: str
) -> None:
    body, field = BAD_BODIES[case]
    name = fresh(names)
    token = (await login(client, users.admin))["token"]
    response = await client.post("/api/v1/images", json={"name": name, **body}, headers=bearer(token))
    error = (await response.get_json())["error"]
    assert response.status_code == 400 and error["code"] == "INVALID_INPUT", error
    assert error["fields"][0]["field"] == field, error
    assert "NotFound" in kubectl("get", "image", name, check=False).stderr


async def test_deleting_an_image_a_vm_uses_is_refused_naming_the_vm(
    client: Client, users: Users, kubectl: Kubectl, names: list[str], namespace: str
) -> None:
    token = (await login(client, users.admin))["token"]
    name = fresh(names)
    assert (await client.post("/api/v1/images", json=http_body(name), headers=bearer(token))).status_code == 201
    vm = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": "uses-it", "namespace": namespace},
        "spec": {"memory": "64Mi", "disks": [{"name": "root", "image": name}]},
    }
    kubectl.apply(vm)

    async def vm_seen() -> bool:
        response = await client.get(f"/api/v1/vms/uses-it?namespace={namespace}", headers=bearer(token))
        return response.status_code == 200

    await eventually(vm_seen, timeout=10, what="the gateway to see the VM")
    response = await client.delete(f"/api/v1/images/{name}", headers=bearer(token))
    assert response.status_code == 409
    error = (await response.get_json())["error"]
    assert error["code"] == "CONFLICT" and f"{namespace}/uses-it" in error["message"], error
    assert kubectl.get_json("image", name)["metadata"].get("deletionTimestamp") is None


async def test_a_viewer_reads_images_but_may_not_create_delete_or_upload(
    client: Client, users: Users, names: list[str]
) -> None:
    admin = (await login(client, users.admin))["token"]
    viewer = (await login(client, users.viewer))["token"]
    name = fresh(names)
    assert (await client.post("/api/v1/images", json=http_body(name), headers=bearer(admin))).status_code == 201
    assert (await client.get(f"/api/v1/images/{name}", headers=bearer(viewer))).status_code == 200
    assert (await client.get("/api/v1/images", headers=bearer(viewer))).status_code == 200
    for response in (
        await client.post("/api/v1/images", json=http_body(fresh(names)), headers=bearer(viewer)),
        await client.delete(f"/api/v1/images/{name}", headers=bearer(viewer)),
        await client.put(f"/api/v1/images/{name}/upload", data=b"x", headers=bearer(viewer)),
    ):
        assert response.status_code == 403
        assert (await response.get_json())["error"]["code"] == "PERMISSION_DENIED"


async def test_unknown_images_are_404_and_an_http_image_takes_no_upload(
    client: Client, users: Users, names: list[str]
) -> None:
    token = (await login(client, users.admin))["token"]
    missing = fresh(names, "missing")
    for response in (
        await client.get(f"/api/v1/images/{missing}", headers=bearer(token)),
        await client.delete(f"/api/v1/images/{missing}", headers=bearer(token)),
        await client.put(f"/api/v1/images/{missing}/upload", data=b"qcow", headers=bearer(token)),
    ):
        error = (await response.get_json())["error"]
        assert response.status_code == 404 and error["code"] == "NOT_FOUND" and missing in error["message"]
    name = fresh(names)
    assert (await client.post("/api/v1/images", json=http_body(name), headers=bearer(token))).status_code == 201
    response = await client.put(f"/api/v1/images/{name}/upload", data=b"qcow", headers=bearer(token))
    error = (await response.get_json())["error"]
    assert response.status_code == 409 and "not an upload image" in error["message"]


@pytest.fixture
async def small_uploads(gateway_config: dict[str, Any]) -> AsyncIterator[Client]:
    """A gateway whose uploads may be 12 MiB at most: over the JSON limit (10 MiB), under it for uploads."""
    async with create_app({**gateway_config, "UPLOAD_MAX_BYTES": 12 << 20}).test_app() as test_app:
        yield test_app.test_client()


async def test_uploads_have_their_own_limit_and_not_the_json_one(
    small_uploads: Client, users: Users, names: list[str]
) -> None:
    client = small_uploads
    token = (await login(client, users.admin))["token"]
    name = fresh(names)
    body = {"name": name, "source": {"upload": {}}}
    assert (await client.post("/api/v1/images", json=body, headers=bearer(token))).status_code == 201
    size = (12 << 20) + 1  # announced, as clients do: refused before a byte is read
    over = await client.put(
        f"/api/v1/images/{name}/upload", data=b"\0" * size, headers={**bearer(token), "Content-Length": str(size)}
    )
    error = (await over.get_json())["error"]
    assert over.status_code == 413 and "12582912 bytes" in error["message"], error
    # 11 MiB is over the JSON limit but within the upload's: it gets past the limits to the choice of a host
    within = await client.put(
        f"/api/v1/images/{name}/upload?host=no-such-host", data=b"\0" * (11 << 20), headers=bearer(token)
    )
    error = (await within.get_json())["error"]
    assert within.status_code == 404 and "no-such-host" in error["message"], error
    json_over = await client.post("/api/v1/images", data=b" " * (11 << 20), headers=bearer(token))
    assert json_over.status_code == 413


async def test_a_vm_from_an_image_with_uefi_is_what_kubectl_sees(
    client: Client, users: Users, kubectl: Kubectl, names: list[str], namespace: str
) -> None:
    token = (await login(client, users.admin))["token"]
    os_image, iso = fresh(names, "os"), fresh(names, "iso")
    assert (await client.post("/api/v1/images", json=http_body(os_image), headers=bearer(token))).status_code == 201
    body = http_body(iso, format="iso")
    assert (await client.post("/api/v1/images", json=body, headers=bearer(token))).status_code == 201
    vm = {
        "name": "from-image",
        "namespace": namespace,
        "memory": "256Mi",
        "firmware": "uefi",
        "disks": [
            {"name": "root", "image": os_image, "size": "10Gi", "boot_order": 1},
            {"name": "install", "image": iso, "cdrom": True},
        ],
    }
    response = await client.post("/api/v1/vms", json=vm, headers=bearer(token))
    created = (await response.get_json())["data"]
    assert response.status_code == 201, created
    assert created["disks"][0]["image"] == os_image and created["disks"][1]["cdrom"] is True
    spec = kubectl.get_json("vvm", "from-image", "-n", namespace)["spec"]
    assert spec["firmware"] == "uefi"
    assert spec["disks"][0] == {"name": "root", "image": os_image, "size": "10Gi", "bootOrder": 1, **_defaults()}
    assert spec["disks"][1]["image"] == iso and spec["disks"][1]["cdrom"] is True


def _defaults() -> dict[str, Any]:
    return {"bus": "virtio", "readOnly": False, "cdrom": False}
