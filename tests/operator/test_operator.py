"""The operator process against the real API server: placement, host health, restarts.

No agent runs here: hosts are Host objects whose status the test writes, and
their heartbeat is a named stand-in (tests/support/heartbeat.py) renewing
their Leases. tests/e2e runs the real agent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from ..conftest import Kubectl
from ..support.heartbeat import HeartbeatStandIn
from ..support.processes import ComponentProcess
from ..support.wait import wait_until

pytestmark = pytest.mark.usefixtures("operator")


class Fleet:
    """Hosts made for one test, labelled so that only this test's VMs select them."""

    def __init__(self, kubectl: Kubectl, api: client.ApiClient) -> None:
        self.kubectl = kubectl
        self.api = api
        self.run = f"r{uuid.uuid4().hex[:8]}"  # a letter first: never read as a number
        self.hosts: list[str] = []
        self.beats: dict[str, HeartbeatStandIn] = {}

    def host(
        self,
        name: str,
        cpu: int,
        memory: str,
        *,
        ready: bool = True,
        maintenance: bool = False,
        lease_seconds: int = 15,
    ) -> str:
        full = f"{name}-{self.run}"
        self.kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "Host",
                "metadata": {"name": full, "labels": {"test-run": self.run}},
                "spec": {"maintenance": maintenance},
            }
        )
        self.hosts.append(full)
        status = {"id": str(uuid.uuid4()), "hostname": full, "capacity": {"cpu": cpu, "memory": memory}}
        self.kubectl(
            "patch", "host", full, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
        )
        if ready:
            self.beats[full] = HeartbeatStandIn(self.api, full, duration=lease_seconds).start()
            wait_until(
                lambda: (
                    condition(self.kubectl.get_json("host", full).get("status", {}), "Ready").get("status") == "True"
                ),
                30,
                what=f"{full} Ready",
            )
        return full

    def vm_manifest(self, name: str, namespace: str, cpu: int, memory: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"cpu": cpu, "memory": memory, "hostSelector": {"test-run": self.run}, **spec},
        }

    def cleanup(self) -> None:
        for beat in self.beats.values():
            beat.delete()
        if self.hosts:
            self.kubectl("delete", "host", *self.hosts, "--wait=false", check=False)


@pytest.fixture
def fleet(kubectl: Kubectl, api: client.ApiClient) -> Iterator[Fleet]:
    f = Fleet(kubectl, api)
    yield f
    f.cleanup()


def vm_status(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    return kubectl.get_json("vvm", name, "-n", namespace).get("status") or {}


def condition(obj_status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in obj_status.get("conditions") or [] if c["type"] == ctype), {})


def placed(kubectl: Kubectl, name: str, namespace: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        return vm_status(kubectl, name, namespace).get("host")

    return probe


def test_vm_is_placed_on_the_ready_host_with_room(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    small = fleet.host("small", cpu=2, memory="1Gi")
    big = fleet.host("big", cpu=8, memory="8Gi")
    kubectl.apply(fleet.vm_manifest("web", namespace, cpu=4, memory="2Gi"))
    assert wait_until(placed(kubectl, "web", namespace), 30) == big
    vm = kubectl.get_json("vvm", "web", "-n", namespace)
    host_id = kubectl.get_json("host", big)["status"]["id"]
    assert vm["status"]["hostId"] == host_id
    assert vm["status"]["phase"] == "Scheduled"
    assert vm["metadata"]["labels"]["vapor.io/host"] == big
    scheduled = condition(vm["status"], "Scheduled")
    assert scheduled["status"] == "True" and big in scheduled["message"]
    assert small not in json.dumps(vm["status"])
    described = kubectl("describe", "vvm", "web", "-n", namespace).stdout
    assert "Scheduled" in described and f"Placed on host {big}" in described
    # The host counts what it carries.
    wait_until(lambda: kubectl.get_json("host", big)["status"].get("vmCount") == 1, 20, what="vmCount 1")


def test_a_clone_is_placed_on_its_sources_host(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    first = fleet.host("first", cpu=8, memory="2Gi")
    kubectl.apply(fleet.vm_manifest("golden", namespace, cpu=1, memory="1Gi"))
    assert wait_until(placed(kubectl, "golden", namespace), 30) == first
    roomy = fleet.host("roomy", cpu=64, memory="64Gi")  # more room: a plain VM would go there
    clone = fleet.vm_manifest("copy", namespace, cpu=1, memory="512Mi", cloneFrom={"vm": "golden"})
    kubectl.apply(clone)
    assert wait_until(placed(kubectl, "copy", namespace), 30) == first
    kubectl.apply(fleet.vm_manifest("plain", namespace, cpu=1, memory="512Mi"))
    assert wait_until(placed(kubectl, "plain", namespace), 30) == roomy
    # A clone of a VM that does not exist waits, and says why.
    kubectl.apply(fleet.vm_manifest("orphan", namespace, cpu=1, memory="512Mi", cloneFrom={"vm": "nobody"}))
    status = wait_until(
        lambda: (s := vm_status(kubectl, "orphan", namespace)).get("phase") == "Unschedulable" and s,
        30,
        what="phase Unschedulable",
    )
    assert condition(status, "Scheduled")["reason"] == "CloneSourceNotFound"


def test_unschedulable_vm_says_why_then_lands_when_room_appears(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    only = fleet.host("only", cpu=2, memory="2Gi")  # 20 vCPUs at the default allocation ratio of 10
    kubectl.apply(fleet.vm_manifest("huge", namespace, cpu=32, memory="1Gi"))
    status = wait_until(
        lambda: (s := vm_status(kubectl, "huge", namespace)).get("phase") == "Unschedulable" and s,
        30,
        what="phase Unschedulable",
    )
    scheduled = condition(status, "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert f"{only}: 20 CPU free, 32 needed" in scheduled["message"]
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedScheduling", "-o", "json")
    assert any("32 needed" in (e.get("note") or e.get("message") or "") for e in json.loads(events.stdout)["items"])
    # Room appears: the operator tries again by itself.
    kubectl(
        "patch",
        "host",
        only,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"capacity":{"cpu":32,"memory":"64Gi"}}}',
    )
    assert wait_until(placed(kubectl, "huge", namespace), 30) == only
    assert condition(vm_status(kubectl, "huge", namespace), "Scheduled")["status"] == "True"


def test_host_status_shows_what_it_may_give_and_has_given(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    host = fleet.host("acct", cpu=2, memory="4Gi")

    def resources() -> tuple[dict[str, Any], dict[str, Any]]:
        status = kubectl.get_json("host", host)["status"]
        return status.get("allocatable") or {}, status.get("allocated") or {}

    wait_until(lambda: resources()[0] == {"cpu": 20, "memory": 4 * 2**30}, 20, what="allocatable at ratio 10")
    for i in range(3):  # three 1-vCPU VMs on a 2-CPU host: over-committed, as the ratio allows
        kubectl.apply(fleet.vm_manifest(f"small{i}", namespace, cpu=1, memory="512Mi"))
    for i in range(3):
        assert wait_until(placed(kubectl, f"small{i}", namespace), 30) == host
    wait_until(lambda: resources()[1] == {"cpu": 3, "memory": 3 * 512 * 2**20}, 20, what="allocated 3 vCPUs")
    # The Host's own ratio wins over the operator's: 1 gives out only its 2 logical CPUs.
    kubectl("patch", "host", host, "--type=merge", "-p", '{"spec":{"cpuAllocationRatio":1}}')
    wait_until(lambda: resources()[0] == {"cpu": 2, "memory": 4 * 2**30}, 20, what="allocatable at ratio 1")
    kubectl.apply(fleet.vm_manifest("one-more", namespace, cpu=1, memory="256Mi"))
    status = wait_until(
        lambda: (s := vm_status(kubectl, "one-more", namespace)).get("phase") == "Unschedulable" and s, 30
    )
    assert f"{host}: 0 CPU free, 1 needed" in condition(status, "Scheduled")["message"]
    explained = kubectl("explain", "hosts.spec.cpuAllocationRatio").stdout
    assert "per logical CPU" in explained and "Memory is never over-committed" in explained


def test_selector_maintenance_and_readiness_are_respected(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    fleet.host("draining", cpu=64, memory="64Gi", maintenance=True)
    fleet.host("silent", cpu=64, memory="64Gi", ready=False)
    ok = fleet.host("ok", cpu=2, memory="2Gi")
    kubectl.apply(fleet.vm_manifest("a", namespace, cpu=1, memory="512Mi"))
    assert wait_until(placed(kubectl, "a", namespace), 30) == ok


def test_two_vms_created_together_do_not_overcommit_a_host(kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
    host = fleet.host("tight", cpu=8, memory="1Gi")
    both = [fleet.vm_manifest(n, namespace, cpu=1, memory="768Mi") for n in ("one", "two")]
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in both))
    wait_until(
        lambda: all(
            vm_status(kubectl, n, namespace).get("phase") in ("Scheduled", "Unschedulable") for n in ("one", "two")
        ),
        30,
        what="both decided",
    )
    time.sleep(2)  # a second chance for a wrong double placement to show
    hosts = [vm_status(kubectl, n, namespace).get("host") for n in ("one", "two")]
    assert sorted(hosts, key=str) == sorted([host, None], key=str)


def test_many_vms_created_at_once_are_placed_with_no_host_overcommitted(
    kubectl: Kubectl, fleet: Fleet, namespace: str
) -> None:
    """40 VMs in one apply onto 3 hosts with room for about half: each host carries at most what it may give,
    counting a VM at its maxMemory ceiling (it can grow to it live), and no VM left out fits anywhere."""
    hosts = [fleet.host(f"batch{i}", cpu=2, memory="2Gi") for i in range(3)]  # 20 vCPUs and 2Gi each
    wanted = {f"b{i:02d}": (256 if i % 3 else 512) * 2**20 for i in range(40)}  # every third grows to 512Mi
    manifests = [
        fleet.vm_manifest(
            n, namespace, cpu=1, memory="256Mi", **({} if size == 256 * 2**20 else {"maxMemory": "512Mi"})
        )
        for n, size in wanted.items()
    ]
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

    def decided() -> dict[str, dict[str, Any]] | None:
        items = kubectl.get_json("vvm", "-n", namespace)["items"]
        phases = {i["metadata"]["name"]: i.get("status") or {} for i in items}
        done = len(phases) == len(wanted) and all(
            s.get("phase") in ("Scheduled", "Unschedulable") for s in phases.values()
        )
        return phases if done else None

    wait_until(decided, 60, what="all 40 decided")
    time.sleep(2)  # a second chance for a wrong double placement to show
    final = {i["metadata"]["name"]: i for i in kubectl.get_json("vvm", "-n", namespace)["items"]}
    carried = dict.fromkeys(hosts, 0)
    for name, vm in final.items():
        host = (vm.get("status") or {}).get("host")
        if host:
            assert vm["metadata"]["labels"]["vapor.io/host"] == host
            carried[host] += wanted[name]
    assert all(total <= 2 * 2**30 for total in carried.values()), carried
    left = [n for n, vm in final.items() if not (vm.get("status") or {}).get("host")]
    assert 0 < len(left) < len(wanted)
    for name in left:
        assert all(total + wanted[name] > 2 * 2**30 for total in carried.values()), f"{name} fits: {carried}"
        assert final[name]["status"]["phase"] == "Unschedulable"


def test_host_turns_not_ready_when_its_lease_expires_and_its_vms_unknown(
    kubectl: Kubectl,
    fleet: Fleet,
    namespace: str,
) -> None:
    host = fleet.host("fragile", cpu=4, memory="4Gi", lease_seconds=3)
    kubectl.apply(fleet.vm_manifest("db", namespace, cpu=1, memory="256Mi"))
    assert wait_until(placed(kubectl, "db", namespace), 30) == host
    ready = wait_until(lambda: condition(kubectl.get_json("host", host).get("status", {}), "Ready"), 20)
    assert ready["status"] == "True" and ready["reason"] == "AgentHeartbeat"
    table = kubectl("get", "vhost", host).stdout.split("\n")[1].split()
    assert table[1] == "True"

    fleet.beats[host].stop()  # the agent goes silent
    lost = wait_until(
        lambda: (c := condition(kubectl.get_json("host", host)["status"], "Ready")).get("status") == "False" and c,
        30,
        what="Ready False",
    )
    assert lost["reason"] == "LeaseExpired" and "last renewed its Lease" in lost["message"]
    wait_until(lambda: vm_status(kubectl, "db", namespace).get("phase") == "Unknown", 20, what="VM Unknown")
    assert "HostNotReady" in kubectl("describe", "host", host).stdout

    fleet.beats[host].start()  # and comes back
    wait_until(
        lambda: condition(kubectl.get_json("host", host)["status"], "Ready").get("status") == "True",
        30,
        what="Ready again",
    )
    assert vm_status(kubectl, "db", namespace)["host"] == host, "a host coming back keeps its VMs"


def test_operator_restart_changes_nothing_that_was_right(
    kubectl: Kubectl,
    fleet: Fleet,
    namespace: str,
    operator: ComponentProcess,
) -> None:
    host = fleet.host("steady", cpu=4, memory="4Gi")
    kubectl.apply(fleet.vm_manifest("keep", namespace, cpu=1, memory="256Mi"))
    assert wait_until(placed(kubectl, "keep", namespace), 30) == host
    wait_until(lambda: kubectl.get_json("host", host)["status"].get("vmCount") == 1, 20, what="vmCount")
    before = kubectl.get_json("vvm", "keep", "-n", namespace)["metadata"]["resourceVersion"]
    host_before = kubectl.get_json("host", host)["status"]
    operator.stop()
    operator.start()
    time.sleep(5)  # several health and placement rounds of the new process
    assert operator.running(), operator.tail()
    after = kubectl.get_json("vvm", "keep", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before, "the restarted operator rewrote a placed VM"
    assert after["status"]["host"] == host
    host_after = kubectl.get_json("host", host)["status"]
    assert condition(host_after, "Ready") == condition(host_before, "Ready")
    assert host_after["vmCount"] == 1
