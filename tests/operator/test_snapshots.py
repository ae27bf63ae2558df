"""Snapshots reach their VM's host, and a VM with snapshots is refused a migration that would lose them.

The operator alone against the real API server (no agent runs): a snapshot
gets its VM's host label and the VM as its owner; one of a VM that does not
exist fails at once; a Migration of a VM with a snapshot fails its pre-flight
with SnapshotsKept False naming the snapshot, and goes through once the
snapshot is deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from ..conftest import Kubectl
from ..support.wait import wait_until
from .test_migration import Scene
from .test_operator import Fleet, condition

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def fleet(kubectl: Kubectl, api: client.ApiClient) -> Iterator[Fleet]:
    f = Fleet(kubectl, api)
    yield f
    f.cleanup()


@pytest.fixture
def scene(kubectl: Kubectl, fleet: Fleet, namespace: str) -> Scene:
    return Scene(kubectl, fleet, namespace)


def snapshot(scene: Scene, name: str, vm: str) -> dict[str, Any]:
    scene.kubectl.apply(
        {"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachineSnapshot",
         "metadata": {"name": name, "namespace": scene.ns}, "spec": {"vm": vm}}
    )  # fmt: skip
    return scene.kubectl.get_json("vsnap", name, "-n", scene.ns)


def test_a_snapshot_goes_to_its_vms_host_owned_by_the_vm(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    scene.vm("web", src)
    snapshot(scene, "before-upgrade", "web")
    snap = wait_until(
        lambda: (
            (s := scene.kubectl.get_json("vsnap", "before-upgrade", "-n", scene.ns))["metadata"]
            .get("labels", {})
            .get("vapor.io/host")
            and s
        ),
        30,
        what="the snapshot's host label",
    )
    assert snap["metadata"]["labels"]["vapor.io/host"] == src
    vm_uid = scene.vm_obj("web")["metadata"]["uid"]
    assert [(o["kind"], o["name"], o["uid"]) for o in snap["metadata"]["ownerReferences"]] == [
        ("VirtualMachine", "web", vm_uid)
    ]

    snapshot(scene, "of-nothing", "ghost")
    status = wait_until(
        lambda: scene.kubectl.get_json("vsnap", "of-nothing", "-n", scene.ns).get("status") or {}, 30, what="Failed"
    )
    assert status["phase"] == "Failed" and "ghost does not exist" in status["failureReason"]


def test_a_vm_with_snapshots_is_refused_a_migration_saying_why(scene: Scene, fleet: Fleet, kubectl: Kubectl) -> None:
    src = fleet.host("src", cpu=8, memory="8Gi")
    dst = fleet.host("dst", cpu=8, memory="8Gi")
    scene.vm("web", src)
    snapshot(scene, "kept", "web")
    scene.migrate("move", "web", dst)
    status = scene.wait_phase("move", "Failed")
    kept = condition(status, "SnapshotsKept")
    assert kept["status"] == "False" and kept["reason"] == "HasSnapshots"
    assert "kept" in kept["message"] and "delete them first" in kept["message"]
    assert "SnapshotsKept" in status["failureReason"]
    assert scene.vm_obj("web")["status"]["host"] == src  # nothing moved, nothing lost

    kubectl("delete", "vsnap", "kept", "-n", scene.ns)  # no agent: no finalizer on it
    scene.migrate("again", "web", dst)
    status = scene.wait_phase("again", "PreparingTarget")
    assert condition(status, "SnapshotsKept") == {}
