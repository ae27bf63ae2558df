"""Vapor on a real cluster: ``helm install`` onto the kubelet node, then REST through its pods (marker cluster).

One cluster and one release for the module (tests/cluster/release.py). The
gateway is reached through its Service (a NodePort, kube-proxy's rules in the
node's namespace); the VM is placed by the in-cluster operator and run by the
agent DaemonSet's pod on the machine's libvirtd; ``kubectl delete namespace``
goes through the controller manager's namespace deletion.
"""

from __future__ import annotations

import time

import httpx
import libvirt
import pytest

from ..support.wait import wait_until
from .release import NAMESPACE, RELEASE, Release, fetch_in_cluster, metric, placed_vm, pods, pods_report, ready

# The first test waits for the image build (cached layers: a few minutes; from nothing: longer).
pytestmark = [pytest.mark.cluster, pytest.mark.image, pytest.mark.timeout(1800)]


def test_every_pod_of_the_release_is_ready_on_the_node(release: Release) -> None:
    cluster = release.cluster
    counts = {"operator": 2, "gateway": 1, "agent": 1}
    for component, count in counts.items():
        found = pods(cluster, component)
        assert len(found) == count and all(map(ready, found)), pods_report(cluster)
        assert {p["spec"]["nodeName"] for p in found} == {cluster.node.name}
    # The agent's Host is the node's, registered and connected.
    host = cluster.kubectl.get_json("host", cluster.node.name)
    assert host["status"]["id"]


def test_probes_and_metrics_answer_through_the_clusters_services(release: Release) -> None:
    cluster = release.cluster
    assert httpx.get(f"{release.url}/readyz", timeout=10).status_code == 200
    assert "vapor_gateway_http_requests_total" in httpx.get(f"{release.url}/metrics", timeout=10).text
    # The agent serves on the node's network (its address, port 9464).
    agent = httpx.get(f"http://{cluster.node.state['address']}:9464/metrics", timeout=10)
    assert "vapor_agent_libvirt_call_duration_seconds" in agent.text
    # The operator's metrics Service, by name from a pod (cluster DNS, kube-proxy).
    services = cluster.kubectl.get_json("services", "-n", NAMESPACE)["items"]
    [operator] = [s for s in services if s["metadata"]["name"] == f"{RELEASE}-operator-metrics"]
    port = operator["spec"]["ports"][0]["port"]
    name = f"{RELEASE}-operator-metrics.{NAMESPACE}.svc.cluster.local"
    assert "vapor_operator_vms_placed_total" in fetch_in_cluster(cluster, f"http://{name}:{port}/metrics")


def domain_state(virt: libvirt.virConnect, namespace: str, name: str) -> int | None:
    try:
        return int(virt.lookupByName(f"{namespace}_{name}").state()[0])
    except libvirt.libvirtError:
        return None


def test_through_the_gateways_service_a_user_sees_the_host_and_runs_a_vm_and_the_namespace_takes_it(
    release: Release, virt: libvirt.virConnect, vm_namespace: str
) -> None:
    cluster, ns = release.cluster, vm_namespace
    with release.client() as api:
        hosts = wait_until(
            lambda: [h for h in api.get("/hosts").json()["data"]["hosts"] if h["status"] == "connected"],
            60,
            what="the node's Host connected",
        )
        assert [h["name"] for h in hosts] == [cluster.node.name]

        started = time.monotonic()
        created = api.post("/vms", json={"name": "tiny", "namespace": ns, "cpu": 1, "memory": "32Mi"})
        assert created.status_code in (200, 201), created.text
        started_vm = api.post("/vms/tiny/action", params={"namespace": ns, "wait": 120}, json={"action": "start"})
        assert started_vm.status_code == 200, f"{started_vm.text}\n{pods_report(cluster)}"
        view = api.get("/vms/tiny", params={"namespace": ns}).json()["data"]
        assert view["phase"] == "Running" and view["host"] == cluster.node.name, view
        print(f"in-cluster VM create to Running: {time.monotonic() - started:.1f}s")
        assert domain_state(virt, ns, "tiny") == libvirt.VIR_DOMAIN_RUNNING

    # The controller manager deletes the namespace's objects; the VM's finalizer lets the agent remove its domain.
    cluster.delete_namespace(ns, timeout=120)
    assert domain_state(virt, ns, "tiny") is None, "the domain went with its VM"


def test_when_the_leading_operator_dies_the_next_vm_is_placed_once_within_15_s(
    release: Release, vm_namespace: str
) -> None:
    cluster = release.cluster
    peers = cluster.kubectl.get_json("clusterkopfpeering", "vapor-operator").get("status") or {}
    operators = {p["metadata"]["name"]: p for p in pods(cluster, "operator")}
    # A peer's id names its pod (user@hostname/...): the one of highest priority acts.
    leader_id = max(peers, key=lambda peer: peers[peer]["priority"])
    [leader] = [name for name in operators if f"@{name}/" in leader_id]
    [other] = [name for name in operators if name != leader]
    placed_before = metric(cluster, other, "vapor_operator_vms_placed_total")

    # The leader's process dies (SIGKILL through the node's containerd): no clean goodbye to its peers.
    container = operators[leader]["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    killed = cluster.node.runtime.ctr("tasks", "kill", "--signal", "SIGKILL", container)
    assert killed.returncode == 0, killed.stderr
    died = time.monotonic()
    view = placed_vm(release, vm_namespace, "after")
    took = time.monotonic() - died
    assert view["host"] == cluster.node.name
    assert took <= 15, f"placed {took:.1f}s after the leader died"
    # The kubelet restarts the killed container, a new peer with a new random priority: either it or the
    # other replica acts, and exactly one placed the VM (the restarted one counts from zero).
    by_other = metric(cluster, other, "vapor_operator_vms_placed_total") - placed_before
    by_restarted = metric(cluster, leader, "vapor_operator_vms_placed_total")
    print(f"operator leader killed; the VM placed {took:.1f}s later by the {'other' if by_other else 'restarted'} one")
    assert by_other + by_restarted == 1, (by_other, by_restarted)
