"""Virtual machines over REST: create, read, delete and power actions, checked the way a user would, with kubectl.

No agent runs here: where an action must see the VM reach a phase, a stand-in
(``StandInAgent``, a FAKE of the agent's status writes) reports it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.gateway._schema import Success
from vapor.gateway._vmschema import VMList
from vapor.kube import Kube
from vapor.model.names import REQUESTED_BY_ANNOTATION, RESTART_ANNOTATION, STOP_MODE_ANNOTATION

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import StandInAgent, Users, bearer, login


def vm_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"memory": "64Mi", "cpu": 1, **spec},
    }


async def _create(client: Client, token: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/vms", json=body, headers=bearer(token))
    payload = await response.get_json()
    assert response.status_code == 201, payload
    return dict(payload["data"])


async def test_create_through_rest_is_what_kubectl_sees(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    created = await _create(
        client,
        token,
        name="web",
        namespace=namespace,
        cpu=2,
        memory=256,
        disks=[{"name": "root", "size": "1Gi", "boot_order": 1}],
        networks=[{"name": "lan", "source": "default"}],
        run_strategy="Halted",
        host_selector={"zone": "a"},
    )
    assert created["memory"] == "256Mi"
    assert created["status"] == "Pending"
    vm = kubectl.get_json("virtualmachine", "web", "-n", namespace)
    assert vm["metadata"]["uid"] == created["id"]
    assert vm["spec"]["cpu"] == 2
    assert vm["spec"]["memory"] == "256Mi"
    assert vm["spec"]["disks"][0]["size"] == "1Gi"
    assert vm["spec"]["networks"][0]["source"] == "default"
    assert vm["spec"]["hostSelector"] == {"zone": "a"}
    assert vm["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == users.admin.name
    shown = kubectl.get_json("virtualmachine", "web", "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert f"vapor-gateway:{users.admin.name}" in managers
    # readable right away, by id and by name
    by_id = await client.get(f"/api/v1/vms/{created['id']}", headers=bearer(token))
    assert (await by_id.get_json())["data"]["name"] == "web"
    by_name = await client.get(f"/api/v1/vms/web?namespace={namespace}", headers=bearer(token))
    assert (await by_name.get_json())["data"]["id"] == created["id"]
    # a second VM of the same name is a conflict with its own code
    response = await client.post(
        "/api/v1/vms", json={"name": "web", "namespace": namespace, "memory": "64Mi"}, headers=bearer(token)
    )
    assert response.status_code == 409
    error = (await response.get_json())["error"]
    assert error["code"] == "ALREADY_EXISTS"
    assert "web" in error["message"]


async def test_kubectl_changes_show_in_rest(client: Client, users: Users, namespace: str, kubectl: Kubectl) -> None:
    token = (await login(client, users.viewer))["token"]
    kubectl.apply(vm_manifest("db", namespace, cpu=3, runStrategy="Running"))

    async def listed() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/vms?namespace={namespace}", headers=bearer(token))
        data = (await response.get_json())["data"]
        return next((v for v in data["vms"] if v["name"] == "db"), None)

    vm = await eventually(listed)
    assert vm["cpu"] == 3
    assert vm["run_strategy"] == "Running"
    assert vm["memory_bytes"] == 64 * 2**20
    kubectl("delete", "virtualmachine", "db", "-n", namespace)

    async def gone() -> bool:
        return await listed() is None

    await eventually(gone)
    response = await client.get(f"/api/v1/vms/db?namespace={namespace}", headers=bearer(token))
    assert response.status_code == 404


async def test_list_has_every_vm_and_counts_them(client: Client, users: Users, namespace: str) -> None:
    token = (await login(client, users.admin))["token"]
    for i in range(3):
        await _create(client, token, name=f"vm-{i}", namespace=namespace, memory="32Mi")
    response = await client.get(f"/api/v1/vms?namespace={namespace}", headers=bearer(token))
    body = await response.get_json()
    assert body["status"] == "success"
    assert body["data"]["count"] == 3
    assert [v["name"] for v in body["data"]["vms"]] == ["vm-0", "vm-1", "vm-2"]
    Success[VMList].model_validate(body)  # the documented schema
    everything = await (await client.get("/api/v1/vms", headers=bearer(token))).get_json()
    assert {v["id"] for v in body["data"]["vms"]} <= {v["id"] for v in everything["data"]["vms"]}
    # a client that accepts gzip gets the same list, compressed
    compressed = await client.get(
        f"/api/v1/vms?namespace={namespace}", headers={**bearer(token), "Accept-Encoding": "gzip"}
    )
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(await compressed.get_data())) == body


async def test_delete_through_rest(client: Client, users: Users, namespace: str, kubectl: Kubectl) -> None:
    token = (await login(client, users.admin))["token"]
    created = await _create(client, token, name="tmp", namespace=namespace, memory="32Mi")
    response = await client.delete(f"/api/v1/vms/{created['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert (await response.get_json())["data"]["name"] == "tmp"
    result = kubectl("get", "virtualmachine", "tmp", "-n", namespace, "--ignore-not-found", "-o", "name")
    assert result.stdout.strip() == ""
    events = _events(kubectl, namespace, "tmp")
    assert any(users.admin.name in e["note"] and e["reason"] == "DeleteRequested" for e in events)


def _events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    raw = kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout
    return [e for e in json.loads(raw)["items"] if e["regarding"]["name"] == name]


ACTIONS = [
    # action, force, before (runStrategy), expected runStrategy, expected stop mode, phase the agent reports
    ("start", False, "Halted", "Running", None, "Running"),
    ("stop", False, "Running", "Halted", None, "Stopped"),
    ("stop", True, "Running", "Halted", "force", "Stopped"),
    ("pause", False, "Running", "Paused", None, "Paused"),
    ("resume", False, "Paused", "Running", None, "Running"),
]


@pytest.mark.parametrize(("action", "force", "before", "strategy", "stop_mode", "phase"), ACTIONS)
async def test_power_action_completes_when_the_agent_reports(
    client: Client,
    users: Users,
    namespace: str,
    kubectl: Kubectl,
    kube: Kube,
    action: str,
    force: bool,
    before: str,
    strategy: str,
    stop_mode: str | None,
    phase: str,
) -> None:
    token = (await login(client, users.admin))["token"]
    annotations = {STOP_MODE_ANNOTATION: "force"} if action == "start" else {}  # start must clear it
    manifest = vm_manifest("box", namespace, runStrategy=before)
    manifest["metadata"]["annotations"] = annotations
    kubectl.apply(manifest)
    agent = StandInAgent(kube)
    await agent.report("box", namespace, phase="Starting")
    request = asyncio.create_task(
        client.post(
            f"/api/v1/vms/box/action?namespace={namespace}",
            json={"action": action, "force": force},
            headers=bearer(token),
        )
    )

    def spec_changed() -> dict[str, Any] | None:
        vm = kubectl.get_json("virtualmachine", "box", "-n", namespace)
        return vm if vm["spec"]["runStrategy"] == strategy else None

    vm = await eventually(spec_changed)
    assert not request.done()  # still waiting for the agent
    assert vm["metadata"]["annotations"].get(STOP_MODE_ANNOTATION) == stop_mode
    assert vm["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == users.admin.name
    await agent.report("box", namespace, phase=phase)  # FAKE: what the agent writes once libvirt is done
    response = await request
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["data"]["completed"] is True
    assert body["data"]["phase"] == phase
    assert body["data"]["action"] == action
    events = _events(kubectl, namespace, "box")
    assert any(users.admin.name in e["note"] and e["reason"] == f"{action.capitalize()}Requested" for e in events)
    described = kubectl("describe", "virtualmachine", "box", "-n", namespace).stdout
    assert users.admin.name in described


async def test_restart_completes_when_the_agent_acknowledges(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, kube: Kube
) -> None:
    token = (await login(client, users.admin))["token"]
    kubectl.apply(vm_manifest("box", namespace, runStrategy="Running"))
    agent = StandInAgent(kube)
    await agent.report("box", namespace, phase="Running")
    request = asyncio.create_task(
        client.post(f"/api/v1/vms/box/action?namespace={namespace}", json={"action": "restart"}, headers=bearer(token))
    )

    def annotated() -> str | None:
        vm = kubectl.get_json("virtualmachine", "box", "-n", namespace)
        return (vm["metadata"].get("annotations") or {}).get(RESTART_ANNOTATION)

    value = await eventually(annotated)
    assert not request.done()
    await agent.report("box", namespace, lastRestartRequest=value)  # FAKE: the agent's acknowledgement
    response = await request
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["data"]["completed"] is True
    assert body["data"]["target_phase"] is None
    assert any(
        e["reason"] == "RestartRequested" and users.admin.name in e["note"] for e in _events(kubectl, namespace, "box")
    )


@pytest.mark.parametrize("action", ["start", "stop", "restart", "pause", "resume"])
async def test_action_answers_not_completed_after_the_wait(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, action: str
) -> None:
    token = (await login(client, users.admin))["token"]
    before = {"start": "Halted", "resume": "Paused"}.get(action, "Running")
    kubectl.apply(vm_manifest("slow", namespace, runStrategy=before))
    vm_id = kubectl.get_json("virtualmachine", "slow", "-n", namespace)["metadata"]["uid"]
    response = await client.post(f"/api/v1/vms/{vm_id}/action?wait=1", json={"action": action}, headers=bearer(token))
    body = await response.get_json()
    assert response.status_code == 202, body
    assert body["status"] == "success"
    assert body["data"]["completed"] is False
    assert "not reported" in body["data"]["message"]
    # the request itself was made
    vm = kubectl.get_json("virtualmachine", "slow", "-n", namespace)
    if action == "restart":
        assert RESTART_ANNOTATION in vm["metadata"]["annotations"]
    else:
        assert vm["spec"]["runStrategy"] == {"start": "Running", "resume": "Running", "stop": "Halted"}.get(
            action, "Paused"
        )


async def test_action_without_waiting(client: Client, users: Users, namespace: str, kubectl: Kubectl) -> None:
    token = (await login(client, users.admin))["token"]
    kubectl.apply(vm_manifest("quick", namespace))
    response = await client.post(
        f"/api/v1/vms/quick/action?namespace={namespace}&wait=0", json={"action": "start"}, headers=bearer(token)
    )
    body = await response.get_json()
    assert response.status_code == 202
    assert body["data"] | {"id": None} == {
        "id": None,
        "name": "quick",
        "namespace": namespace,
        "action": "start",
        "force": False,
        "completed": False,
        "phase": None,
        "target_phase": "Running",
        "message": "start requested",
    }


async def test_viewer_may_not_act_or_delete(client: Client, users: Users, namespace: str, kubectl: Kubectl) -> None:
    token = (await login(client, users.viewer))["token"]
    kubectl.apply(vm_manifest("keep", namespace))
    for method, path, body in (
        ("POST", f"/api/v1/vms/keep/action?namespace={namespace}", {"action": "start"}),
        ("DELETE", f"/api/v1/vms/keep?namespace={namespace}", None),
    ):
        response = await client.open(path, method=method, json=body, headers=bearer(token))
        assert response.status_code == 403
        assert (await response.get_json())["error"]["code"] == "PERMISSION_DENIED"
    vm = kubectl.get_json("virtualmachine", "keep", "-n", namespace)
    assert vm["spec"]["runStrategy"] == "Halted"


async def test_action_stops_waiting_when_the_vm_fails(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, kube: Kube
) -> None:
    token = (await login(client, users.admin))["token"]
    kubectl.apply(vm_manifest("bad", namespace))
    agent = StandInAgent(kube)
    await agent.report("bad", namespace, phase="Failed", observedGeneration=1)  # failed before: not the answer
    request = asyncio.create_task(
        client.post(f"/api/v1/vms/bad/action?namespace={namespace}", json={"action": "start"}, headers=bearer(token))
    )
    vm = await eventually(
        lambda: (
            (v := kubectl.get_json("virtualmachine", "bad", "-n", namespace))["spec"]["runStrategy"] == "Running" and v
        )
    )
    assert not request.done()
    # FAKE: the agent tried the new spec and failed
    await agent.report("bad", namespace, phase="Failed", observedGeneration=vm["metadata"]["generation"])
    response = await request
    body = await response.get_json()
    assert response.status_code == 202
    assert body["data"]["completed"] is False
    assert "failed" in body["data"]["message"]
