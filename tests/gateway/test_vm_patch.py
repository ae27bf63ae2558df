"""Changing a VM over REST (PATCH /api/v1/vms/{id}): what kubectl then sees, what is refused, and writes that race.

No agent runs here: what the running domain does with a change is the agent's
(tests/agent/test_livechange.py); here the spec, its checks and its writer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from ..conftest import Kubectl
from .conftest import Users, bearer, login
from .test_vms import _create


async def _patch(client: Client, token: str, vm: str, namespace: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.patch(f"/api/v1/vms/{vm}?namespace={namespace}", json=body, headers=bearer(token))
    return response.status_code, dict(await response.get_json())


async def _small_vm(client: Client, token: str, namespace: str) -> dict[str, Any]:
    return await _create(
        client,
        token,
        name="resized",
        namespace=namespace,
        cpu=1,
        max_cpu=4,
        memory="64Mi",
        max_memory="256Mi",
        disks=[{"name": "root", "size": "1Gi"}],
        networks=[{"name": "lan", "source": "default"}],
    )


async def test_a_change_is_what_kubectl_sees_and_lists_replace_the_whole_list(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    created = await _small_vm(client, token, namespace)
    assert (created["max_cpu"], created["max_memory"], created["pending_changes"]) == (4, "256Mi", [])

    disks = [{"name": "root", "size": "2Gi"}, {"name": "data", "size": "1Gi", "bus": "scsi"}]
    status, body = await _patch(
        client, token, created["id"], namespace, {"cpu": 2, "memory": 128, "disks": disks, "networks": []}
    )
    assert status == 200, body
    view = body["data"]
    assert (view["cpu"], view["memory"], view["max_memory"]) == (2, "128Mi", "256Mi")
    assert [d["name"] for d in view["disks"]] == ["root", "data"] and view["networks"] == []
    assert view["pending_changes"] == []
    spec = kubectl.get_json("virtualmachine", "resized", "-n", namespace)["spec"]
    assert (spec["cpu"], spec["maxCpu"], spec["memory"], spec["maxMemory"]) == (2, 4, "128Mi", "256Mi")
    assert [(d["name"], d["size"]) for d in spec["disks"]] == [("root", "2Gi"), ("data", "1Gi")]
    assert not spec.get("networks")

    shown = kubectl.get_json("virtualmachine", "resized", "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert f"vapor-gateway:{users.admin.name}" in managers
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "Changed" in events and f"User '{users.admin.name}' changed cpu, disks, memory, networks" in events

    # The ceilings, cloud-init and null for an optional field
    status, body = await _patch(
        client, token, "resized", namespace, {"max_memory": None, "memory": "128Mi", "cloud_init": {"hostname": "h"}}
    )
    assert status == 200, body
    spec = kubectl.get_json("virtualmachine", "resized", "-n", namespace)["spec"]
    assert "maxMemory" not in spec and spec["cloudInit"] == {"hostname": "h"}


BAD = [
    ({"memory": "512Mi"}, 422, "memory", "max_memory"),
    ({"cpu": 8}, 422, "cpu", "max_cpu"),
    ({"max_cpu": 1, "cpu": 2}, 422, "cpu", "max_cpu"),
    ({"disks": [{"name": "root", "size": "512Mi"}]}, 422, "disks[0].size", "never shrink"),
    ({"disks": [{"name": "root", "image": "no-such-image"}]}, 422, "disks[0].image", "does not exist"),
    ({"cpu": None}, 422, "cpu", "null"),
    ({"colour": "red"}, 400, "colour", "Extra inputs"),
    ({"memory": "8Mi"}, 400, "memory", "at least 16Mi"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), BAD)
async def test_a_change_the_vm_cannot_take_is_refused_naming_the_field(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, body: Any, status: int, field: str, words: str
) -> None:
    token = (await login(client, users.admin))["token"]
    await _small_vm(client, token, namespace)
    before = kubectl.get_json("virtualmachine", "resized", "-n", namespace)
    answered, payload = await _patch(client, token, "resized", namespace, body)
    assert answered == status, payload
    error = payload["error"]
    assert error["code"] == "INVALID_INPUT"
    assert [f["field"] for f in error["fields"]][:1] == [field] and words in error["message"] + str(error["fields"])
    after = kubectl.get_json("virtualmachine", "resized", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # nothing written


async def test_an_unknown_vm_is_404_and_a_viewer_may_not_change_one(
    client: Client, users: Users, namespace: str
) -> None:
    token = (await login(client, users.admin))["token"]
    status, payload = await _patch(client, token, "nobody", namespace, {"cpu": 2})
    assert status == 404 and payload["error"]["code"] == "NOT_FOUND"
    await _small_vm(client, token, namespace)
    viewer = (await login(client, users.viewer))["token"]
    status, payload = await _patch(client, viewer, "resized", namespace, {"cpu": 2})
    assert status == 403, payload


async def test_changes_made_at_once_conflict_rather_than_overwrite_each_other(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    await _small_vm(client, token, namespace)
    # Eight at once (three sometimes ran one after another on a loaded machine, each reading the last's result).
    sizes = [f"{96 + 16 * i}Mi" for i in range(8)]
    answers = await asyncio.gather(*(_patch(client, token, "resized", namespace, {"memory": m}) for m in sizes))
    statuses = sorted(status for status, _ in answers)
    assert set(statuses) <= {200, 409} and 409 in statuses, answers
    for status, payload in answers:
        if status == 409:
            assert payload["error"]["code"] == "CONFLICT" and "retry" in payload["error"]["message"]
    # The one that was written is the one kubectl shows: no answer of 200 was silently overwritten.
    # Each 200 read the VM as the one before it left it (its write carried that resourceVersion), so what
    # kubectl shows is one of them; every other answer is a 409 that changed nothing.
    won = [payload["data"]["memory"] for status, payload in answers if status == 200]
    assert won and len(won) < len(sizes)
    assert kubectl.get_json("virtualmachine", "resized", "-n", namespace)["spec"]["memory"] in won
