"""One node's agent credentials cannot change another node's objects (the chart's admission policy).

Every agent shares one ServiceAccount, whose RBAC must allow patching Hosts,
VMs, Mounts and Migrations in general. The chart's ValidatingAdmissionPolicy
narrows that to the node named in the request's token. Here an attacker holds
agent A's credentials (the token the kubelet mounts in A's pod) and sends, to
the real API server, the writes an agent can send (merge patches, status
patches, creates) for what belongs to node B, or for its own objects in ways an
agent never writes; a token of the same account bound to no node tries too.
Each attempt must be refused by the policy (RBAC alone would let it through),
and the agent's own writes must still go through (the real agent doing its work
is in test_rbac.py).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane

from .conftest import kubeconfig_as, node_bound_kubeconfig

pytestmark = pytest.mark.chart

VAPOR = "/apis/vapor.io/v1alpha1"
MERGE = "application/merge-patch+json"


@dataclass
class Answer:
    status: int
    message: str

    @property
    def refused_by_policy(self) -> bool:
        return self.status == 403 and "ValidatingAdmissionPolicy" in self.message


@dataclass
class As:
    """Requests to the API server with someone's bearer token, as the agent sends them."""

    server: str
    token: str
    tls: ssl.SSLContext

    @classmethod
    def from_kubeconfig(cls, path: Path) -> As:
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        return cls(cluster["server"], config["users"][0]["user"]["token"], tls)

    def send(self, method: str, path: str, body: dict[str, Any], content_type: str = "application/json") -> Answer:
        request = urllib.request.Request(
            self.server + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, context=self.tls, timeout=10) as response:
                return Answer(response.status, "")
        except urllib.error.HTTPError as error:
            return Answer(error.code, json.loads(error.read() or b"{}").get("message", ""))

    def patch(self, path: str, body: dict[str, Any]) -> Answer:
        return self.send("PATCH", path, body, MERGE)

    def create(self, path: str, body: dict[str, Any]) -> Answer:
        return self.send("POST", path, body)

    def delete(self, path: str) -> Answer:
        return self.send("DELETE", path, {})


def lease(node: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": namespace},
        "spec": {"holderIdentity": node},
    }


@pytest.fixture
def nodes(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, installed: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """Two Hosts, a VM and a Mount on each, and a Migration to node B, made by an administrator."""
    suffix = uuid.uuid4().hex[:6]
    a, b = f"node-a-{suffix}", f"node-b-{suffix}"
    for node in (a, b):
        kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": node}, "spec": {}})
        kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "VirtualMachine",
                "metadata": {"name": f"vm-{node}", "namespace": namespace, "labels": {"vapor.io/host": node}},
                "spec": {"runStrategy": "Halted", "cpu": 1, "memory": "64Mi"},
            }
        )
        kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "VirtualMachineSnapshot",
                "metadata": {"name": f"snap-{node}", "namespace": namespace, "labels": {"vapor.io/host": node}},
                "spec": {"vm": f"vm-{node}"},
            }
        )
        kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "Mount",
                "metadata": {"name": f"data-{node}", "labels": {"vapor.io/host": node}},
                "spec": {"host": node, "device": "/dev/vdb", "mountPoint": "/mnt/data", "filesystem": "ext4"},
            }
        )
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Migration",
            "metadata": {
                "name": "to-b",
                "namespace": namespace,
                "labels": {"vapor.io/source-host": b, "vapor.io/target-host": b},
            },
            "spec": {"vmName": f"vm-{b}", "destinationHost": b},
        }
    )
    # The API server loads a new policy a moment after it is created: wait until it refuses a token
    # that names no node (an empty patch, which changes nothing if it went through).
    account = f"{installed}-vapor-agent"
    unbound = As.from_kubeconfig(kubeconfig_as(control_plane, kubectl, namespace, account, tmp_path / "probe"))
    wait_until(
        lambda: unbound.patch(f"{VAPOR}/hosts/{a}/status", {}).refused_by_policy,
        timeout=30,
        what="the chart's admission policy to be in force",
    )
    yield a, b
    for node in (a, b):
        kubectl(
            "delete", "--ignore-not-found", "--wait=false", f"hosts.vapor.io/{node}", f"mounts.vapor.io/data-{node}"
        )


@pytest.fixture
def agent_a(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    installed: str,
    nodes: tuple[str, str],
    tmp_path: Path,
) -> Iterator[As]:
    """agent A's credentials: its ServiceAccount's token, bound to its pod on node A."""
    account = f"{installed}-vapor-agent"
    with node_bound_kubeconfig(control_plane, kubectl, namespace, account, nodes[0], tmp_path / "a") as config:
        yield As.from_kubeconfig(config)


def test_agent_a_cannot_change_node_bs_objects(
    kubectl: Kubectl, namespace: str, nodes: tuple[str, str], agent_a: As
) -> None:
    a, b = nodes
    vms, leases = (
        f"{VAPOR}/namespaces/{namespace}/virtualmachines",
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
    )
    snaps = f"{VAPOR}/namespaces/{namespace}/virtualmachinesnapshots"
    attempts = {
        "Host B's status": agent_a.patch(f"{VAPOR}/hosts/{b}/status", {"status": {"hostname": "evil"}}),
        "Host B's spec": agent_a.patch(f"{VAPOR}/hosts/{b}", {"spec": {"maintenance": True}}),
        "Host B's labels": agent_a.patch(f"{VAPOR}/hosts/{b}", {"metadata": {"labels": {"vapor.io/host-id": "x"}}}),
        "a Host of another name": agent_a.create(
            f"{VAPOR}/hosts", {"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": f"{b}-x"}}
        ),
        "VM B's status": agent_a.patch(f"{vms}/vm-{b}/status", {"status": {"phase": "Failed"}}),
        "VM B's finalizers": agent_a.patch(f"{vms}/vm-{b}", {"metadata": {"finalizers": ["vapor.io/agent"]}}),
        "VM B moved to A": agent_a.patch(f"{vms}/vm-{b}", {"metadata": {"labels": {"vapor.io/host": a}}}),
        "Mount B's status": agent_a.patch(f"{VAPOR}/mounts/data-{b}/status", {"status": {"phase": "Failed"}}),
        "Snapshot B's status": agent_a.patch(f"{snaps}/snap-{b}/status", {"status": {"phase": "Failed"}}),
        "Snapshot B's finalizers": agent_a.patch(f"{snaps}/snap-{b}", {"metadata": {"finalizers": ["x.io/y"]}}),
        "Snapshot B moved to A": agent_a.patch(f"{snaps}/snap-{b}", {"metadata": {"labels": {"vapor.io/host": a}}}),
        "Snapshot B deleted": agent_a.delete(f"{snaps}/snap-{b}"),
        "Migration to B's status": agent_a.patch(
            f"{VAPOR}/namespaces/{namespace}/migrations/to-b/status", {"status": {"phase": "Failed"}}
        ),
        "B's heartbeat Lease": agent_a.create(leases, lease(b, namespace)),
    }
    let_through = {what: answer for what, answer in attempts.items() if not answer.refused_by_policy}
    assert let_through == {}, "agent A's credentials changed node B's objects"
    # Nothing of B changed.
    host_b = kubectl.get_json("host", b)
    assert (host_b.get("status") or {}).get("hostname") != "evil"
    assert not host_b["spec"].get("maintenance")
    assert kubectl.get_json("virtualmachine", f"vm-{b}", "-n", namespace)["metadata"]["labels"]["vapor.io/host"] == b
    assert kubectl.get_json("vsnap", f"snap-{b}", "-n", namespace).get("status") is None
    # The refusal says why.
    assert f"the agent of node {a} may write only its own Host" in attempts["Host B's status"].message


def test_agent_a_may_do_its_own_work_and_no_more(
    kubectl: Kubectl, namespace: str, nodes: tuple[str, str], agent_a: As
) -> None:
    a, _ = nodes
    vms, leases = (
        f"{VAPOR}/namespaces/{namespace}/virtualmachines",
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
    )
    snaps = f"{VAPOR}/namespaces/{namespace}/virtualmachinesnapshots"
    own = {
        "Host A's status": agent_a.patch(f"{VAPOR}/hosts/{a}/status", {"status": {"hostname": "node-a"}}),
        "Host A's host-id label": agent_a.patch(
            f"{VAPOR}/hosts/{a}", {"metadata": {"labels": {"vapor.io/host-id": "1"}}}
        ),
        "VM A's status": agent_a.patch(f"{vms}/vm-{a}/status", {"status": {"phase": "Stopped"}}),
        "VM A's finalizer": agent_a.patch(f"{vms}/vm-{a}", {"metadata": {"finalizers": ["vapor.io/agent"]}}),
        "Mount A's status": agent_a.patch(f"{VAPOR}/mounts/data-{a}/status", {"status": {"phase": "Pending"}}),
        "Snapshot A's status": agent_a.patch(f"{snaps}/snap-{a}/status", {"status": {"phase": "Pending"}}),
        "Snapshot A's finalizer": agent_a.patch(f"{snaps}/snap-{a}", {"metadata": {"finalizers": ["x.io/y"]}}),
        "A's heartbeat Lease": agent_a.create(leases, lease(a, namespace)),
    }
    failed = {what: answer for what, answer in own.items() if answer.status >= 300}
    assert failed == {}, "the policy refuses an agent's own work"
    for kind, obj in (("virtualmachine", f"vm-{a}"), ("vsnap", f"snap-{a}")):
        kubectl("patch", kind, obj, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert agent_a.delete(f"{snaps}/snap-{a}").status < 300  # once its VM is gone, the agent deletes its snapshots
    # An agent never changes what a VM, a Host or a Mount should be, even on its own node.
    beyond = {
        "Host A's spec": agent_a.patch(f"{VAPOR}/hosts/{a}", {"spec": {"maintenance": True}}),
        "VM A's spec": agent_a.patch(f"{vms}/vm-{a}", {"spec": {"cpu": 2}}),
        "Mount A's options": agent_a.patch(f"{VAPOR}/mounts/data-{a}", {"spec": {"options": "rw"}}),
    }
    let_through = {what: answer for what, answer in beyond.items() if not answer.refused_by_policy}
    assert let_through == {}, "agent A changed a spec"
    assert kubectl.get_json("virtualmachine", f"vm-{a}", "-n", namespace)["spec"]["cpu"] == 1


def test_an_agent_token_bound_to_no_node_writes_nothing(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    installed: str,
    namespace: str,
    nodes: tuple[str, str],
    tmp_path: Path,
) -> None:
    a, _ = nodes
    # A token of the agents' account that names no node (TokenRequest bound to nothing, as a leaked
    # long-lived token would be): RBAC lets it patch Hosts, the policy does not.
    config = kubeconfig_as(control_plane, kubectl, namespace, f"{installed}-vapor-agent", tmp_path / "unbound")
    answer = As.from_kubeconfig(config).patch(f"{VAPOR}/hosts/{a}/status", {"status": {"hostname": "x"}})
    assert answer.refused_by_policy, answer
    assert "names no node" in answer.message


APPLY = "application/apply-patch+yaml"


def test_agent_a_writes_only_its_own_entry_of_an_images_status(
    kubectl: Kubectl, nodes: tuple[str, str], agent_a: As
) -> None:
    a, b = nodes
    image = f"img-{uuid.uuid4().hex[:6]}"
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Image",
            "metadata": {"name": image},
            "spec": {"source": {"upload": {}}, "format": "qcow2"},
        }
    )
    try:
        entry_b = {"host": b, "phase": "Ready", "sha256": "b" * 64}
        kubectl(
            "patch", "image", image, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Ready", "hosts": [entry_b]}}),
        )  # fmt: skip
        path = f"{VAPOR}/images/{image}/status?fieldManager=vapor-agent-images.{a}&force=true"

        def apply(hosts: list[dict[str, Any]], **status: Any) -> Answer:
            body = {"apiVersion": "vapor.io/v1alpha1", "kind": "Image", "metadata": {"name": image}}
            return agent_a.send("PATCH", path, {**body, "status": {"hosts": hosts, **status}}, APPLY)

        own = apply([{"host": a, "phase": "Fetching", "percent": 40}])
        assert own.status == 200, own
        beyond = {
            "B's entry": apply([{"host": b, "phase": "Failed", "reason": "ChecksumMismatch"}]),
            "the Image's phase": apply([{"host": a, "phase": "Fetching"}], phase="Failed"),
            "the hosts to fetch": apply([{"host": a, "phase": "Fetching"}], fetchHosts=[a]),
            "B's entry removed": agent_a.patch(
                f"{VAPOR}/images/{image}/status", {"status": {"hosts": [{"host": a, "phase": "Ready"}]}}
            ),
        }
        let_through = {what: answer for what, answer in beyond.items() if not answer.refused_by_policy}
        assert let_through == {}, "agent A changed what is not its own entry"
        status = kubectl.get_json("image", image)["status"]
        assert status["phase"] == "Ready"
        assert {h["host"]: h["phase"] for h in status["hosts"]} == {a: "Fetching", b: "Ready"}
        assert f"the agent of node {a} may write only its own entry" in beyond["B's entry"].message
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", f"images.vapor.io/{image}")
