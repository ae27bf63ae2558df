"""Migrations between two real libvirt hosts, driven by the real operator and the two real agents."""

from __future__ import annotations

import time

import pytest

from vapor.model.names import HOST_LABEL, MIGRATING_ANNOTATION

from ..support.wait import wait_until
from .conftest import Cluster

pytestmark = pytest.mark.migration

TERMINAL = ("Succeeded", "Failed", "Cancelled")


def _running_vm(cluster: Cluster, ns: str, name: str, host: int, **spec: object) -> str:
    cluster.place_vm(ns, name, host, **spec)
    dom = f"{ns}_{name}"
    try:
        wait_until(lambda: cluster.running_on(dom) == [host], 60, what="domain running on the source")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.vm(ns, name)}\n{cluster.logs()}") from exc
    wait_until(lambda: (cluster.vm(ns, name).get("status") or {}).get("phase") == "Running", 60, what="VM Running")
    return dom


def _settled(cluster: Cluster, ns: str, name: str) -> bool:
    """The operator took the VM's migration annotation away: the agents act on it again."""
    return MIGRATING_ANNOTATION not in (cluster.vm(ns, name)["metadata"].get("annotations") or {})


def _end(cluster: Cluster, ns: str, name: str, timeout: float = 90) -> str:
    try:
        return str(wait_until(lambda: (p := cluster.phase(ns, name)) in TERMINAL and p, timeout, what=f"{name} ends"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.migration(ns, name)}\n{cluster.logs()}") from exc


def test_live_migration_moves_a_running_vm(cluster: Cluster, vms: str) -> None:
    dom = _running_vm(cluster, vms, "live", 0)
    cluster.migrate(vms, "move-live", "live", 1)
    assert _end(cluster, vms, "move-live") == "Succeeded", cluster.migration(vms, "move-live")

    assert cluster.running_on(dom) == [1]
    assert cluster.domain(0, dom) is None  # undefineSource (the default)
    target = cluster.domain(1, dom)
    assert target is not None and target.isPersistent()  # persistent (the default)
    status = cluster.migration(vms, "move-live")["status"]
    assert status["startTime"] and status["endTime"] and status["downtimeMs"] >= 0
    assert status["progress"]["percent"] == 100
    completed = {c["type"]: c for c in status["conditions"]}["Completed"]
    assert completed["status"] == "True" and completed["reason"] == "Migrated"
    vm = cluster.vm(vms, "live")
    assert vm["metadata"]["labels"][HOST_LABEL] == cluster.nodes[1]
    assert vm["status"]["host"] == cluster.nodes[1]
    # The target's agent adopts the domain: the VM stays Running, the annotation is gone, nobody restarts it.
    wait_until(lambda: _settled(cluster, vms, "live"), 30, what="annotation gone")
    wait_until(lambda: cluster.vm(vms, "live")["status"].get("phase") == "Running", 30, what="Running on target")
    assert cluster.running_on(dom) == [1] and target.ID() == cluster.domain(1, dom).ID()  # type: ignore[union-attr]


def test_transient_copy_keeps_the_source_definition(cluster: Cluster, vms: str) -> None:
    """persistent false and undefineSource false: a transient domain arrives, the source keeps its definition."""
    dom = _running_vm(cluster, vms, "keep", 0)
    cluster.migrate(vms, "move-keep", "keep", 1, persistent=False, undefineSource=False)
    assert _end(cluster, vms, "move-keep") == "Succeeded", cluster.migration(vms, "move-keep")
    target, source = cluster.domain(1, dom), cluster.domain(0, dom)
    assert target is not None and target.isActive() and not target.isPersistent()
    assert source is not None and not source.isActive() and source.isPersistent()
    wait_until(lambda: _settled(cluster, vms, "keep"), 30, what="annotation gone")
    assert cluster.running_on(dom) == [1]  # the source's agent forgot the VM: it did not start it again


def test_cancel_mid_way_keeps_the_vm_on_the_source(cluster: Cluster, vms: str) -> None:
    dom = _running_vm(cluster, vms, "busy", 0, **cluster.dirty_vm_spec())
    cluster.wait_dirtying(dom)  # the guest's loop runs, so the copy cannot converge
    cluster.migrate(vms, "move-busy", "busy", 1, bandwidthMiBPerSecond=1, completionTimeoutPerGiB=100000)
    wait_until(
        lambda: (
            ((cluster.migration(vms, "move-busy").get("status") or {}).get("progress") or {}).get("memoryIteration", 0)
            >= 2
        ),
        60,
        what="migration under way",
    )
    assert cluster.phase(vms, "move-busy") == "Running"
    cluster.kubectl(
        "patch", "migrations.vapor.io", "move-busy", "-n", vms, "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    assert _end(cluster, vms, "move-busy") == "Cancelled"

    status = cluster.migration(vms, "move-busy")["status"]
    completed = {c["type"]: c for c in status["conditions"]}["Completed"]
    assert completed["status"] == "False" and completed["reason"] == "Aborted"
    assert cluster.running_on(dom) == [0]
    assert cluster.domain(1, dom) is None  # nothing left on the target
    vm = cluster.vm(vms, "busy")
    assert vm["metadata"]["labels"][HOST_LABEL] == cluster.nodes[0] and vm["status"]["host"] == cluster.nodes[0]
    wait_until(lambda: _settled(cluster, vms, "busy"), 30, what="annotation gone")
    assert cluster.running_on(dom) == [0]


def test_offline_migration_of_a_stopped_vm(cluster: Cluster, vms: str) -> None:
    cluster.place_vm(vms, "cold", 0, runStrategy="Halted")
    dom = f"{vms}_cold"
    wait_until(lambda: cluster.domain(0, dom) is not None, 60, what="domain defined on the source")
    wait_until(lambda: (cluster.vm(vms, "cold").get("status") or {}).get("phase") == "Stopped", 60, what="Stopped")
    cluster.migrate(vms, "move-cold", "cold", 1, live=False)
    assert _end(cluster, vms, "move-cold") == "Succeeded", cluster.migration(vms, "move-cold")

    assert cluster.domain(0, dom) is None
    target = cluster.domain(1, dom)
    assert target is not None and target.isPersistent() and not target.isActive()
    assert cluster.vm(vms, "cold")["status"]["host"] == cluster.nodes[1]
    wait_until(lambda: _settled(cluster, vms, "cold"), 30, what="annotation gone")
    assert cluster.running_on(dom) == []  # Halted stays halted on its new host


def test_source_agent_killed_mid_migration(cluster: Cluster, vms: str) -> None:
    """The job outlives the agent; the restarted agent follows it (or reports the restart) and it ends cleanly."""
    dom = _running_vm(cluster, vms, "crash", 0, **cluster.dirty_vm_spec())
    cluster.wait_dirtying(dom)
    # Slow to converge at 1 MiB/s; the completion timeout (64 MiB x 320 s/GiB = 20 s) ends it if it does not.
    cluster.migrate(vms, "move-crash", "crash", 1, bandwidthMiBPerSecond=1, completionTimeoutPerGiB=320)
    wait_until(
        lambda: (cluster.migration(vms, "move-crash").get("status") or {}).get("startTime"), 60, what="job started"
    )
    agent = cluster.agents[0]
    agent.kill()
    agent.start()
    phase = _end(cluster, vms, "move-crash", timeout=120)
    # Either the restarted agent followed the job to its end, or found it ended: both are clean ends.
    assert phase in ("Succeeded", "Failed"), f"{cluster.migration(vms, 'move-crash')}\n{cluster.logs()}"
    status = cluster.migration(vms, "move-crash")["status"]
    completed = {c["type"]: c for c in status["conditions"]}["Completed"]
    assert status["endTime"]
    if phase == "Succeeded":
        assert completed["status"] == "True" and completed["reason"] == "Migrated"
        where = 1
    else:
        assert completed["status"] == "False"
        assert completed["reason"] in ("CompletionTimeout", "AgentRestarted", "Failed"), completed
        where = 0
    wait_until(lambda: _settled(cluster, vms, "crash"), 30, what="annotation gone")
    wait_until(lambda: cluster.running_on(dom) == [where], 30, what=f"the VM running on host {where} only")
    assert cluster.domain(1 - where, dom) is None
    vm = cluster.vm(vms, "crash")
    assert vm["metadata"]["labels"][HOST_LABEL] == cluster.nodes[where] and vm["status"]["host"] == cluster.nodes[where]
    wait_until(lambda: cluster.vm(vms, "crash")["status"].get("phase") == "Running", 60, what="VM Running")


def test_vm_deleted_as_its_migration_completes_leaves_no_domain(cluster: Cluster, vms: str) -> None:
    # The move has ended in libvirt (the domain runs on the target) but the operator has not bound the VM
    # there yet when the VM is deleted: whoever finalizes it must remove the domain where it now is.
    dom = _running_vm(cluster, vms, "gone", 0, **cluster.marker_vm_spec())
    cluster.migrate(vms, "move-gone", "gone", 1)
    wait_until(lambda: cluster.phase(vms, "move-gone") == "Running", 60, what="the move running")
    cluster.operator.stop()
    try:

        def completed() -> bool:
            conditions = (cluster.migration(vms, "move-gone").get("status") or {}).get("conditions") or []
            return any(c["type"] == "Completed" and c["status"] == "True" for c in conditions)

        wait_until(completed, 60, what="the source agent's Completed")
        assert cluster.running_on(dom) == [1]
        cluster.kubectl("delete", "vvm", "gone", "-n", vms, "--wait=false")
        time.sleep(3)  # what the source agent does with a deleted VM whose domain has left, it does now
    finally:
        cluster.operator.start()
    gone = ["vvm", "gone", "-n", vms, "--ignore-not-found", "-o", "name"]
    wait_until(lambda: not cluster.kubectl("get", *gone).stdout.strip(), 60, what="the VM gone")
    left = lambda: [i for i in (0, 1) if cluster.domain(i, dom) is not None]  # noqa: E731
    wait_until(lambda: not left(), 30, what="no domain of the deleted VM on either host")


def test_drain_moves_every_running_vm_off_a_host(cluster: Cluster, vms: str) -> None:
    # Four 1-vCPU VMs on a host of this 2-CPU machine: more vCPUs than CPUs, as the allocation ratio allows.
    doms = [_running_vm(cluster, vms, f"d{i}", 0) for i in range(4)]
    host = cluster.nodes[0]
    cluster.kubectl("patch", "hosts.vapor.io", host, "--type=merge", "-p", '{"spec":{"maintenance":true}}')
    try:

        def drained() -> dict[str, object] | None:
            drain = (cluster.kubectl.get_json("hosts.vapor.io", host).get("status") or {}).get("drain") or {}
            return drain if drain.get("phase") in ("Drained", "Failed") else None

        try:
            drain = wait_until(drained, 120, what="host drained")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cluster.logs()}") from exc
        assert drain["phase"] == "Drained", drain
        for i, dom in enumerate(doms):
            assert cluster.running_on(dom) == [1]
            assert cluster.domain(0, dom) is None
            assert cluster.vm(vms, f"d{i}")["status"]["host"] == cluster.nodes[1]
        moved = cluster.kubectl.get_json("migrations.vapor.io", "-n", vms, "-l", f"vapor.io/drain={host}")["items"]
        assert sorted(m["spec"]["vmName"] for m in moved if m["status"]["phase"] == "Succeeded") == [
            "d0",
            "d1",
            "d2",
            "d3",
        ]
        allocated = cluster.kubectl.get_json("hosts.vapor.io", cluster.nodes[1])["status"]["allocated"]
        assert allocated["cpu"] >= 4
    finally:
        cluster.kubectl("patch", "hosts.vapor.io", host, "--type=merge", "-p", '{"spec":{"maintenance":false}}')


def test_a_vm_with_cloud_init_finds_its_seed_on_the_target(cluster: Cluster, vms: str) -> None:
    """The seed is a read-only CD-ROM no storage copy carries: the target's agent writes it before the VM comes."""
    dom = _running_vm(cluster, vms, "seeded", 0, cloudInit={"hostname": "seeded-guest"})
    uid = cluster.vm(vms, "seeded")["metadata"]["uid"]
    cluster.migrate(vms, "move-seeded", "seeded", 1)
    assert _end(cluster, vms, "move-seeded") == "Succeeded", cluster.migration(vms, "move-seeded")
    assert cluster.running_on(dom) == [1]
    seed = cluster.agents[1].storage_dir / uid / "cidata.iso"
    assert seed.exists() and b"seeded-guest" in seed.read_bytes()  # the target's own copy, meta-data inside
