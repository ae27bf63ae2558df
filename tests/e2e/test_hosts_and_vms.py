"""Hosts and VMs end to end: REST and kubectl on one truth, with a real agent running real QEMU domains."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import libvirt

from ..conftest import Kubectl
from ..support.wait import wait_until
from .conftest import Stack

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def domain_state(stack: Stack, namespace: str, name: str) -> int | None:
    try:
        return int(stack.virt.lookupByName(f"{namespace}_{name}").state()[0])
    except libvirt.libvirtError:
        return None


def vm(client: httpx.Client, name: str, namespace: str) -> dict[str, Any]:
    r = client.get(f"/vms/{name}", params={"namespace": namespace})
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def host_status(client: httpx.Client, node: str) -> str | None:
    """The REST status of a host: connected, disconnected or unknown (None if not listed)."""
    hosts = client.get("/hosts").json()["data"]["hosts"]
    return next((h["status"] for h in hosts if h["name"] == node), None)


def act(client: httpx.Client, name: str, namespace: str, action: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/vms/{name}/action", params={"namespace": namespace, "wait": 60}, json={"action": action, **body})
    assert r.status_code == 200, r.text
    result = dict(r.json()["data"])
    assert result["completed"] is True, result
    return result


def test_this_agents_host_is_listed_connected_with_its_inventory(stack: Stack, kubectl: Kubectl) -> None:
    with stack.client(stack.viewer) as client:
        hosts = wait_until(
            lambda: [
                h
                for h in client.get("/hosts").json()["data"]["hosts"]
                if h["name"] == stack.node and h["status"] == "connected"
            ],
            60,
            what="connected",
        )
        host = hosts[0]
        kube_host = kubectl.get_json("host", stack.node)
        assert UUID.match(host["id"]) and host["id"] == kube_host["status"]["id"]
        assert host["sync_cursor"] == kube_host["status"]["syncCursor"]
        assert host["kernel"] == kube_host["status"]["kernel"] and host["cpu"]["threads"] >= 1
        assert client.get(f"/hosts/{host['id']}").json()["data"]["name"] == stack.node


def test_a_vm_created_over_rest_runs_and_obeys_rest_and_kubectl(
    stack: Stack,
    kubectl: Kubectl,
    vms_namespace: str,
) -> None:
    ns = vms_namespace
    with stack.client(stack.admin) as client:
        r = client.post(
            "/vms",
            json={"name": "web", "namespace": ns, "cpu": 1, "memory": "32Mi", "host_selector": {"e2e-run": stack.run}},
        )
        assert r.status_code in (200, 201), r.text
        # The operator places it on this node; the agent defines it, shut off (runStrategy Halted).
        wait_until(lambda: vm(client, "web", ns)["phase"] == "Stopped", 60, what="Stopped")
        view = vm(client, "web", ns)
        assert view["host"] == stack.node and view["host_id"] and UUID.match(view["domain_uuid"])
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_SHUTOFF

        assert act(client, "web", ns, "start")["phase"] == "Running"
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_RUNNING
        shown = kubectl("get", "vvm", "web", "-n", ns).stdout.splitlines()[1].split()
        assert shown[1:3] == ["Running", stack.node], "kubectl shows what REST shows"

        # kubectl and REST are two doors to the same resource.
        kubectl("patch", "vvm", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"runStrategy":"Paused"}}')
        wait_until(lambda: vm(client, "web", ns)["phase"] == "Paused", 60, what="Paused via kubectl")
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_PAUSED
        assert act(client, "web", ns, "resume")["phase"] == "Running"
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_RUNNING

        uuid_before = vm(client, "web", ns)["domain_uuid"]
        act(client, "web", ns, "restart")
        assert vm(client, "web", ns)["domain_uuid"] == uuid_before
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_RUNNING

        # A guest with no OS ignores ACPI: only the power-off path can stop it promptly.
        assert act(client, "web", ns, "stop", force=True)["phase"] == "Stopped"
        assert domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_SHUTOFF

        kubectl("patch", "vvm", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"runStrategy":"Running"}}')
        wait_until(lambda: domain_state(stack, ns, "web") == libvirt.VIR_DOMAIN_RUNNING, 60, what="running via kubectl")

        described = kubectl("describe", "vvm", "web", "-n", ns).stdout
        assert stack.admin.name in described, "the Events name who acted"

        r = client.delete(f"/vms/{view['id']}")
        assert r.status_code == 200, r.text
        wait_until(lambda: kubectl("get", "vvm", "web", "-n", ns, check=False).returncode != 0, 60, what="VM gone")
        assert domain_state(stack, ns, "web") is None, "the domain is undefined with the VM"


def test_a_viewer_reads_but_cannot_act(stack: Stack, vms_namespace: str) -> None:
    with stack.client(stack.admin) as admin:
        assert admin.post(
            "/vms",
            json={"name": "ro", "namespace": vms_namespace, "memory": 32, "host_selector": {"e2e-run": stack.run}},
        ).status_code in (200, 201)
    with stack.client(stack.viewer) as viewer:
        assert viewer.get("/vms/ro", params={"namespace": vms_namespace}).status_code == 200
        r = viewer.post("/vms/ro/action", params={"namespace": vms_namespace}, json={"action": "start"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"


def test_a_vm_no_host_can_take_says_why(stack: Stack, vms_namespace: str) -> None:
    with stack.client(stack.admin) as client:
        r = client.post(
            "/vms",
            json={
                "name": "huge",
                "namespace": vms_namespace,
                "cpu": 512,
                "memory": "1Gi",
                "host_selector": {"e2e-run": stack.run},
            },
        )
        assert r.status_code in (200, 201), r.text
        view = wait_until(lambda: (v := vm(client, "huge", vms_namespace))["phase"] == "Unschedulable" and v, 60)
        scheduled = next(c for c in view["conditions"] if c["type"] == "Scheduled")
        assert f"{stack.node}:" in scheduled["message"] and "512 needed" in scheduled["message"]


def test_a_silent_agent_makes_its_host_disconnected_and_a_restarted_one_adopts_its_vms(
    stack: Stack,
    kubectl: Kubectl,
    vms_namespace: str,
) -> None:
    ns = vms_namespace
    with stack.client(stack.admin) as client:
        client.post(
            "/vms",
            json={
                "name": "db",
                "namespace": ns,
                "memory": "32Mi",
                "run_strategy": "Running",
                "host_selector": {"e2e-run": stack.run},
            },
        )
        wait_until(lambda: vm(client, "db", ns)["phase"] == "Running", 60, what="Running")
        domain = vm(client, "db", ns)["domain_uuid"]

        stack.agent.kill()  # a crash: no goodbye, the Lease just stops being renewed
        wait_until(lambda: host_status(client, stack.node) == "disconnected", 60, what="disconnected")
        wait_until(lambda: vm(client, "db", ns)["phase"] == "Unknown", 30, what="Unknown")
        assert domain_state(stack, ns, "db") == libvirt.VIR_DOMAIN_RUNNING, "the VM itself keeps running"

        stack.agent.start()
        wait_until(lambda: host_status(client, stack.node) == "connected", 60, what="connected again")
        wait_until(lambda: vm(client, "db", ns)["phase"] == "Running", 60, what="Running again")
        assert vm(client, "db", ns)["domain_uuid"] == domain, "adopted, not recreated"
        names = [d.name() for d in stack.virt.listAllDomains(0) if d.name().startswith(f"{ns}_")]
        assert names == [f"{ns}_db"], "no duplicate domain"
        events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        assert any(e.get("reason") == "HostNotReady" for e in events)
