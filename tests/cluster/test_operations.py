"""What people do with an installed release, on the real cluster (marker cluster): fail over, upgrade, uninstall.

One cluster and one release for the module (fixtures.py, release.py), in
this order: the acting operator's pod is killed and the OTHER replica places
the next VM; ``helm upgrade`` to a new image tag rolls every component while a
VM keeps running (the same libvirt domain, never restarted) and the new agent
acts on it; ``helm uninstall`` leaves the VMs and their domains, and a new
``helm install`` adopts them.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import libvirt
import pytest

from ..support.wait import wait_until
from .conftest import Cluster
from .release import NAMESPACE, RELEASE, REPOSITORY, Release, metric, placed_vm, pods, pods_report, ready
from .timeline import Timeline

pytestmark = [pytest.mark.cluster, pytest.mark.image, pytest.mark.timeout(1800)]

PLACED = "vapor_operator_vms_placed_total"


def running_vm(api: httpx.Client, namespace: str, name: str) -> dict[str, Any]:
    """A diskless VM created and started through the gateway; its view once Running."""
    created = api.post("/vms", json={"name": name, "namespace": namespace, "cpu": 1, "memory": "32Mi"})
    assert created.status_code in (200, 201), created.text
    started = api.post(f"/vms/{name}/action", params={"namespace": namespace, "wait": 120}, json={"action": "start"})
    assert started.status_code == 200 and started.json()["data"]["phase"] == "Running", started.text
    return dict(api.get(f"/vms/{name}", params={"namespace": namespace}).json()["data"])


def domain(virt: libvirt.virConnect, namespace: str, name: str) -> tuple[int, int]:
    """The id and state of the VM's libvirt domain (the id changes when the domain is started again)."""
    dom = virt.lookupByName(f"{namespace}_{name}")
    return dom.ID(), dom.state()[0]


def acting_operator(cluster: Cluster) -> tuple[str, str]:
    """The operator pod that acts (highest priority in the chart's ClusterKopfPeering) and the other one."""
    peers = cluster.kubectl.get_json("clusterkopfpeering", "vapor-operator").get("status") or {}
    names = [p["metadata"]["name"] for p in pods(cluster, "operator") if "deletionTimestamp" not in p["metadata"]]
    # A peer's id names its pod (user@hostname/...).
    leader_id = max(peers, key=lambda peer: peers[peer]["priority"])
    [leader] = [name for name in names if f"@{name}/" in leader_id]
    [other] = [name for name in names if name != leader]
    return leader, other


def log_times(cluster: Cluster, pod: str, text: str) -> list[float]:
    """Wall-clock times (epoch seconds) of the pod's JSON log lines whose message has ``text``."""
    lines = cluster.kubectl("logs", "-n", NAMESPACE, pod).stdout.splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [datetime.fromisoformat(e["ts"]).timestamp() for e in entries if text in e.get("msg", "")]


@contextmanager
def cordoned(cluster: Cluster) -> Iterator[None]:
    """The nodes cordoned: a Deployment's replacement pod waits Pending; uncordoned after, even on failure."""
    nodes = [n["metadata"]["name"] for n in cluster.kubectl.get_json("nodes")["items"]]
    try:
        for node in nodes:
            cluster.kubectl("cordon", node)
        yield
    finally:
        for node in nodes:
            cluster.kubectl("uncordon", node, check=False)


def test_killing_the_acting_operator_pod_hands_placement_to_the_other_replica_within_15_s(
    release: Release, vm_namespace: str
) -> None:
    cluster = release.cluster
    leader, other = acting_operator(cluster)
    placed_before = metric(cluster, other, PLACED)
    [pod] = [p for p in pods(cluster, "operator") if p["metadata"]["name"] == leader]
    container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    [node] = [n for n in cluster.nodes if n.name == pod["spec"]["nodeName"]]

    # Cordoned, the Deployment's replacement of the killed pod cannot start: only the other replica can act.
    with cordoned(cluster):
        # The leader's process dies (SIGKILL through the node's containerd: no goodbye to its peers), and its
        # pod is force-deleted, so that the kubelet does not start the container again in it.
        killed = node.runtime.ctr("tasks", "kill", "--signal", "SIGKILL", container)
        assert killed.returncode == 0, killed.stderr
        died, died_wall = time.monotonic(), time.time()
        cluster.kubectl("delete", "pod", "-n", NAMESPACE, leader, "--grace-period=0", "--force")
        view = placed_vm(release, vm_namespace, "after")
        placed = time.monotonic() - died
        assert view["host"] == cluster.node.name
        assert placed <= 15, f"placed {placed:.1f}s after the leader died\n{pods_report(cluster)}"
        # The other replica placed it, once; it acts alone in the peering now (the dead peer expired).
        assert metric(cluster, other, PLACED) - placed_before == 1
        peers = cluster.kubectl.get_json("clusterkopfpeering", "vapor-operator").get("status") or {}
        assert [peer for peer in peers if f"@{other}/" not in peer] == [], peers
        [resumed] = [t - died_wall for t in log_times(cluster, other, "Resuming operations") if t > died_wall]
        replacement = [p for p in pods(cluster, "operator") if p["metadata"]["name"] not in (leader, other)]
        assert [p["status"].get("phase") for p in replacement] == ["Pending"]
    print(
        f"\noperator leader pod killed: the other replica took over {resumed:.1f}s later, "
        f"placed the VM {placed:.1f}s after the kill"
    )

    # Uncordoned, the replacement starts and joins as the second replica; the VM stays where it was placed.
    cluster.kubectl("rollout", "status", "-n", NAMESPACE, f"deployment/{RELEASE}-operator", "--timeout=3m")
    assert len([p for p in pods(cluster, "operator") if ready(p)]) == 2, pods_report(cluster)
    after = cluster.kubectl.get_json("virtualmachines", "after", "-n", vm_namespace)
    assert after["metadata"]["labels"]["vapor.io/host"] == cluster.node.name


def test_helm_upgrade_rolls_every_component_to_the_new_tag_while_the_vm_keeps_running(
    release: Release, virt: libvirt.virConnect, vm_namespace: str
) -> None:
    cluster = release.cluster
    with release.client() as api:
        running_vm(api, vm_namespace, "steady")
    domain_id, _ = domain(virt, vm_namespace, "steady")
    before = {p["metadata"]["uid"] for component in ("operator", "gateway", "agent") for p in pods(cluster, component)}
    # The same image under a new tag: every pod template changes, as with a new release of Vapor.
    tag = f"upgrade-{uuid.uuid4().hex[:6]}"
    for node in cluster.nodes:
        tagged = node.runtime.ctr("images", "tag", f"{REPOSITORY}:{release.values['image.tag']}", f"{REPOSITORY}:{tag}")
        assert tagged.returncode == 0, tagged.stderr

    with Timeline(cluster, vm_namespace, virt) as timeline:
        seconds = release.upgrade(**{"image.tag": tag})

    # Every pod is new, Ready, on the new tag: two operators, the gateway, one agent per node. (rollout status
    # returns once the new pods are available; an old operator may still be terminating then: wait for it.)
    wait_until(
        lambda: not {p["metadata"]["uid"] for c in ("operator", "gateway", "agent") for p in pods(cluster, c)} & before,
        90,
        every=0.5,
        what="the old pods gone",
    )
    nodes = {n["metadata"]["name"] for n in cluster.kubectl.get_json("nodes")["items"]}
    for component, count in {"operator": 2, "gateway": 1, "agent": len(nodes)}.items():
        found = pods(cluster, component)
        assert len(found) == count and all(map(ready, found)), pods_report(cluster)
        assert {p["spec"]["containers"][0]["image"] for p in found} == {f"{REPOSITORY}:{tag}"}
        assert not {p["metadata"]["uid"] for p in found} & before
    # The agents went one node at a time (maxUnavailable 1): each node's outage ended before the next began.
    outages = timeline.agent_outages()
    assert set(outages) == nodes, outages
    spans = sorted(span for node_spans in outages.values() for span in node_spans)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans
    # A correctness bound, not a speed target: each agent's heartbeat Lease was renewed again before its
    # duration ran out (else the operator judges the Host lost and marks its VMs Unknown), and every Host
    # stayed Ready in every version the API server sent.
    gaps = timeline.lease_gaps()
    assert set(gaps) == nodes, gaps
    assert all(gap < duration for gap, duration in gaps.values()), gaps
    hosts = timeline.host_readiness()
    assert set(hosts) == nodes and all(set(states) == {"True"} for states in hosts.values()), hosts
    # The VM was Running in every version the API server sent, its domain never stopped nor started again.
    phases = timeline.vm_phases()
    assert set(phases["steady"]) == {"Running"}, phases
    samples = timeline.domains[f"{vm_namespace}_steady"]
    assert samples and {(s.id, s.state) for s in samples} == {(domain_id, libvirt.VIR_DOMAIN_RUNNING)}
    # The new agent runs it: a pause and a resume through the gateway reach the same domain.
    with release.client() as api:
        for action, phase, state in (
            ("pause", "Paused", libvirt.VIR_DOMAIN_PAUSED),
            ("resume", "Running", libvirt.VIR_DOMAIN_RUNNING),
        ):
            done = api.post(
                "/vms/steady/action", params={"namespace": vm_namespace, "wait": 60}, json={"action": action}
            )
            assert done.status_code == 200 and done.json()["data"]["phase"] == phase, done.text
            assert domain(virt, vm_namespace, "steady") == (domain_id, state)
    took = ", ".join(f"{node} {end - start:.1f}s" for node, node_spans in outages.items() for start, end in node_spans)
    unrenewed = ", ".join(f"{node} {gap:.1f}s of {duration}s" for node, (gap, duration) in gaps.items())
    print(
        f"\nhelm upgrade to every pod Ready on {tag}: {seconds:.1f}s; agent down per node: {took}; "
        f"Lease unrenewed at most: {unrenewed}"
    )


def test_helm_uninstall_leaves_the_vms_and_domains_and_a_new_install_adopts_them(
    release: Release, virt: libvirt.virConnect, vm_namespace: str
) -> None:
    cluster = release.cluster
    with release.client() as api:
        running_vm(api, vm_namespace, "kept")
    vm = cluster.kubectl.get_json("virtualmachines", "kept", "-n", vm_namespace)
    domain_id, _ = domain(virt, vm_namespace, "kept")

    seconds = release.uninstall()
    assert cluster.pods(NAMESPACE, f"app.kubernetes.io/instance={RELEASE}") == []
    # No agent and no operator now: the VM's resource is as it was (not deleted, nothing holding it), the
    # Host and the CRDs stay, and the domain runs on.
    left = cluster.kubectl.get_json("virtualmachines", "kept", "-n", vm_namespace)
    assert "deletionTimestamp" not in left["metadata"]
    assert left["metadata"]["uid"] == vm["metadata"]["uid"]
    assert left["metadata"]["finalizers"] == vm["metadata"]["finalizers"]
    assert left["status"]["phase"] == "Running"
    assert cluster.kubectl("get", "host", cluster.node.name, check=False).returncode == 0
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/virtualmachines.vapor.io" in crds
    assert "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev" in crds
    assert domain(virt, vm_namespace, "kept") == (domain_id, libvirt.VIR_DOMAIN_RUNNING)

    # Installed again: the new agent adopts the domain (same id, Running), and a delete goes through it.
    again = release.install()
    with release.client() as api:
        view = api.get("/vms/kept", params={"namespace": vm_namespace}).json()["data"]
        assert view["phase"] == "Running" and view["host"] == cluster.node.name, view
        assert domain(virt, vm_namespace, "kept") == (domain_id, libvirt.VIR_DOMAIN_RUNNING)
        deleted = api.delete("/vms/kept", params={"namespace": vm_namespace})
        assert deleted.status_code == 200, deleted.text
        wait_until(
            lambda: api.get("/vms/kept", params={"namespace": vm_namespace}).status_code == 404, 60, what="VM gone"
        )
    assert f"{vm_namespace}_kept" not in [d.name() for d in virt.listAllDomains(0)]
    print(
        f"\nhelm uninstall to every pod gone: {seconds:.1f}s (the VM and its domain left alone); "
        f"install again to Ready: {again:.1f}s"
    )
