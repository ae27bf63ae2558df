"""Migrations the operator refuses on two real hosts: a second one for the same VM, a NotReady destination.

Nothing moves in either case: the VM keeps running on its host and the target
holds no domain.
"""

from __future__ import annotations

import pytest

from vapor.model.names import HOST_LABEL

from ..support.wait import wait_until
from .conftest import Cluster

pytestmark = pytest.mark.migration

TERMINAL = ("Succeeded", "Failed", "Cancelled")


def _running_vm(cluster: Cluster, ns: str, name: str, host: int, **spec: object) -> str:
    cluster.place_vm(ns, name, host, **spec)
    dom = f"{ns}_{name}"
    wait_until(lambda: cluster.running_on(dom) == [host], 60, what="domain running on the source")
    wait_until(lambda: (cluster.vm(ns, name).get("status") or {}).get("phase") == "Running", 60, what="VM Running")
    return dom


def _end(cluster: Cluster, ns: str, name: str) -> dict[str, object]:
    try:
        wait_until(lambda: cluster.phase(ns, name) in TERMINAL, 90, what=f"{name} ends")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.migration(ns, name)}\n{cluster.logs()}") from exc
    return dict(cluster.migration(ns, name)["status"])


def _ready(cluster: Cluster, node: str) -> str | None:
    status = cluster.kubectl.get_json("hosts.vapor.io", node).get("status") or {}
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def test_a_second_migration_of_the_same_vm_is_refused(cluster: Cluster, vms: str) -> None:
    dom = _running_vm(cluster, vms, "twice", 0, **cluster.dirty_vm_spec())
    # The first one crawls (1 MiB/s, a guest that keeps dirtying memory, and a 1 ms pause allowed at the
    # switch-over: it cannot converge even when a busy machine slows the guest): still active when the second arrives.
    cluster.migrate(vms, "first", "twice", 1, bandwidthMiBPerSecond=1, maxDowntimeMs=1, completionTimeoutPerGiB=100000)
    wait_until(lambda: cluster.phase(vms, "first") in ("PreparingTarget", "Running"), 60, what="first under way")
    cluster.migrate(vms, "second", "twice", 1)
    second = _end(cluster, vms, "second")
    assert second["phase"] == "Failed", second
    assert second.get("failureReason"), second
    assert cluster.phase(vms, "first") not in TERMINAL  # the refusal does not disturb the active one

    cluster.kubectl(
        "patch", "migrations.vapor.io", "first", "-n", vms, "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    assert _end(cluster, vms, "first")["phase"] == "Cancelled"
    assert cluster.running_on(dom) == [0]
    assert cluster.domain(1, dom) is None


def test_a_not_ready_destination_is_refused(cluster: Cluster, vms: str) -> None:
    dom = _running_vm(cluster, vms, "stay", 0)
    target = cluster.agents[1]
    target.stop()
    try:
        wait_until(lambda: _ready(cluster, cluster.nodes[1]) != "True", 60, what="destination NotReady")
        cluster.migrate(vms, "to-down", "stay", 1)
        status = _end(cluster, vms, "to-down")
        assert status["phase"] == "Failed", status
        assert "not Ready" in str(status.get("failureReason")), status
        assert cluster.running_on(dom) == [0]
        assert cluster.domain(1, dom) is None
        vm = cluster.vm(vms, "stay")
        assert vm["metadata"]["labels"][HOST_LABEL] == cluster.nodes[0] and vm["status"]["host"] == cluster.nodes[0]
    finally:
        target.start()
        wait_until(lambda: _ready(cluster, cluster.nodes[1]) == "True", 90, what="destination Ready again")
