"""The operator's side of Images against the real API server: finalizer, summary, fetchHosts, placement, InUse.

No agent runs here: each host's entry in an Image's status.hosts is written
by the named stand-in tests/support/image_agents.py (server-side apply under
that host's agent field manager, as the agents write them); hosts are Host
objects kept Ready by the heartbeat stand-in. tests/e2e fetches real images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from ..conftest import Kubectl
from ..support.image_agents import ImageAgentsStandIn
from ..support.wait import wait_until
from .test_operator import Fleet, condition, placed, vm_status

pytestmark = pytest.mark.usefixtures("operator")

FINALIZER = "vapor.io/image-in-use"
SHA = "ab" * 32
GiB = 2**30


@pytest.fixture
def fleet(kubectl: Kubectl, api: client.ApiClient) -> Iterator[Fleet]:
    f = Fleet(kubectl, api)
    yield f
    f.cleanup()


@pytest.fixture
def agents(api: client.ApiClient) -> ImageAgentsStandIn:
    return ImageAgentsStandIn(api)


class Images:
    """Images made by one test (cluster-scoped: named after the test's run), removed after it."""

    def __init__(self, kubectl: Kubectl, run: str) -> None:
        self.kubectl = kubectl
        self.run = run
        self.names: list[str] = []

    def create(self, name: str, source: dict[str, Any] | None = None, **spec: Any) -> str:
        full = f"{name}-{self.run}"
        source = source or {"http": {"url": f"http://192.0.2.1/{full}.qcow2"}}
        body = {"source": source, "format": "qcow2", **spec}
        if "http" in source:
            body.setdefault("checksum", SHA)
        manifest = {"apiVersion": "vapor.io/v1alpha1", "kind": "Image", "metadata": {"name": full}, "spec": body}
        self.kubectl.apply(manifest)
        self.names.append(full)
        return full

    def get(self, name: str) -> dict[str, Any]:
        return self.kubectl.get_json("image", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def gone(self, name: str) -> bool:
        result = self.kubectl("get", "image", name, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        items = json.loads(self.kubectl("get", "events.events.k8s.io", "-n", "default", "-o", "json").stdout)["items"]
        return [e for e in items if e.get("reason") == reason and (e.get("regarding") or {}).get("name") == name]

    def cleanup(self) -> None:
        for name in self.names:
            self.kubectl("patch", "image", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
            self.kubectl("delete", "image", name, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def images(kubectl: Kubectl, fleet: Fleet) -> Iterator[Images]:
    made = Images(kubectl, fleet.run)
    yield made
    made.cleanup()


def image_disk(image: str) -> dict[str, Any]:
    return {"disks": [{"name": "root", "image": image}]}


def test_every_image_gets_the_finalizer_and_a_summary_of_the_hosts_copies(
    images: Images, agents: ImageAgentsStandIn
) -> None:
    debian = images.create("debian")
    wait_until(lambda: FINALIZER in (images.get(debian)["metadata"].get("finalizers") or []), 30, what="finalizer")
    assert wait_until(lambda: images.status(debian).get("phase"), 30) == "Pending"
    agents.report(debian, "node-a", "Fetching", bytes=400, totalBytes=1000, percent=40)
    agents.report(debian, "node-b", "Failed", reason="HTTPError", message="404 Not Found")
    wait_until(lambda: len(images.status(debian).get("hosts") or []) == 2, 30, what="two entries")
    assert images.status(debian)["phase"] == "Pending"  # one host still fetching
    agents.ready(debian, "node-a", size=1000, sha256=SHA, virtual_size=2 * GiB)
    status = wait_until(lambda: (s := images.status(debian)).get("phase") == "Ready" and s, 30, what="Ready")
    assert status["readyHosts"] == 1
    assert status["size"] == 1000 and status["virtualSize"] == 2 * GiB and status["sha256"] == SHA
    # the agents' entries are theirs: the operator's writes left both in place
    assert {h["host"]: h["phase"] for h in status["hosts"]} == {"node-a": "Ready", "node-b": "Failed"}
    assert condition(status, "InUse")["status"] == "False"
    assert wait_until(lambda: images.events(debian, "ImageReady"), 30)

    broken = images.create("broken")
    agents.report(broken, "node-a", "Failed", reason="ChecksumMismatch", message="sha256 differs")
    agents.report(broken, "node-b", "Refused", reason="InsufficientSpace", message="1Gi free, 5Gi needed")
    assert wait_until(lambda: images.status(broken).get("phase") == "Failed", 30)  # node-b tried nothing
    note = wait_until(lambda: images.events(broken, "ImageFailed"), 30)[0]["note"]
    assert "node-a: ChecksumMismatch" in note


def test_placement_prefers_the_host_holding_the_image_and_says_so(
    kubectl: Kubectl, fleet: Fleet, images: Images, agents: ImageAgentsStandIn, namespace: str
) -> None:
    fleet.host("roomy", cpu=8, memory="8Gi")  # more room: chosen when nothing else differs
    holder = fleet.host("holder", cpu=4, memory="2Gi")
    debian = images.create("debian")
    agents.ready(debian, holder, size=1000, sha256=SHA, virtual_size=GiB)
    wait_until(lambda: images.status(debian).get("readyHosts") == 1, 30, what="ready on the holder")
    kubectl.apply(fleet.vm_manifest("web", namespace, cpu=1, memory="256Mi", **image_disk(debian)))
    assert wait_until(placed(kubectl, "web", namespace), 30) == holder
    scheduled = condition(vm_status(kubectl, "web", namespace), "Scheduled")
    assert f"placed on {holder}, which holds image {debian}" in scheduled["message"]
    assert wait_until(lambda: images.status(debian).get("fetchHosts"), 30) == [holder]
    status = images.status(debian)
    assert condition(status, "InUse")["status"] == "True"
    assert f"{namespace}/web" in condition(status, "InUse")["message"]


def test_a_vm_naming_a_missing_image_waits_and_is_placed_once_it_appears(
    kubectl: Kubectl, fleet: Fleet, images: Images, namespace: str
) -> None:
    host = fleet.host("only", cpu=4, memory="4Gi")
    name = f"later-{fleet.run}"
    kubectl.apply(fleet.vm_manifest("early", namespace, cpu=1, memory="256Mi", **image_disk(name)))
    scheduled = wait_until(
        lambda: (c := condition(vm_status(kubectl, "early", namespace), "Scheduled")).get("reason") and c, 30
    )
    assert scheduled["status"] == "False" and scheduled["reason"] == "ImageNotFound"
    assert f"image {name} does not exist" in scheduled["message"]
    assert vm_status(kubectl, "early", namespace)["phase"] == "Unschedulable"
    images.create("later")  # named so the VM's disk finds it
    assert wait_until(placed(kubectl, "early", namespace), 30) == host
    assert wait_until(lambda: images.status(name).get("fetchHosts"), 30) == [host]


def test_an_upload_image_places_its_vms_only_where_it_was_uploaded(
    kubectl: Kubectl, fleet: Fleet, images: Images, agents: ImageAgentsStandIn, namespace: str
) -> None:
    fleet.host("roomy", cpu=8, memory="8Gi")
    small = fleet.host("small", cpu=2, memory="1Gi")
    uploaded = images.create("mine", source={"upload": {}})
    kubectl.apply(fleet.vm_manifest("web", namespace, cpu=1, memory="256Mi", **image_disk(uploaded)))
    scheduled = wait_until(
        lambda: (c := condition(vm_status(kubectl, "web", namespace), "Scheduled")).get("status") == "False" and c, 30
    )
    assert f"upload image {uploaded} is not here" in scheduled["message"]
    assert vm_status(kubectl, "web", namespace).get("host") is None
    agents.ready(uploaded, small, size=1000, sha256=SHA, virtual_size=GiB)
    assert wait_until(placed(kubectl, "web", namespace), 30) == small


def test_deleting_an_image_in_use_waits_for_its_vms_and_names_them(
    kubectl: Kubectl, fleet: Fleet, images: Images, namespace: str
) -> None:
    debian = images.create("debian")
    for vm in ("one", "two"):
        kubectl.apply(fleet.vm_manifest(vm, namespace, cpu=1, memory="256Mi", **image_disk(debian)))
    wait_until(lambda: FINALIZER in (images.get(debian)["metadata"].get("finalizers") or []), 30, what="finalizer")
    kubectl("delete", "image", debian, "--wait=false")

    def in_use() -> dict[str, Any]:
        return condition(images.status(debian), "InUse")

    waits = wait_until(lambda: (c := in_use()).get("reason") == "DeletionWaits" and c, 30)
    assert waits["status"] == "True"
    assert f"{namespace}/one" in waits["message"] and f"{namespace}/two" in waits["message"]
    assert images.status(debian)["phase"] == "Terminating"
    assert wait_until(lambda: images.events(debian, "DeletionWaits"), 30)
    kubectl("delete", "vvm", "one", "-n", namespace)
    message = wait_until(lambda: (m := in_use().get("message", "")) and "one" not in m.split(":")[-1] and m, 30)
    assert f"{namespace}/two" in message and "1 VirtualMachine " in message
    assert not images.gone(debian)
    kubectl("delete", "vvm", "two", "-n", namespace)
    assert wait_until(lambda: images.gone(debian), 30)
