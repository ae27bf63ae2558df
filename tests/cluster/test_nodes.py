"""Two kubelet nodes, each in its own network namespace: both Ready, pods reach pods and Services across them.

One two-node cluster for the module (``two_nodes``): each node has its own
containerd, kubelet, kube-proxy and pod subnet; the other node's pod subnet
is routed over the nodes' hub, and the API server is reached at one address
on it by both.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from vapor.devenv.nodenet import pod_subnet

from ..support.workloads import service
from .conftest import Cluster, scratch_namespace
from .test_node import READ_THE_API, run_to_completion

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(two_nodes: Cluster) -> Iterator[str]:
    with scratch_namespace(two_nodes) as name:
        yield name


def pinned(name: str, image: str, node: str, **spec: Any) -> dict[str, Any]:
    """A pod of ``image`` that runs on ``node`` (spec.nodeName), labelled app=<name>."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": name, "image": image, "imagePullPolicy": "Never"}], **spec},
    }


def test_both_nodes_are_ready_each_in_its_own_network_with_its_own_pod_subnet(two_nodes: Cluster) -> None:
    first, second = two_nodes.nodes
    for node in (first, second):
        found = two_nodes.kubectl.get_json("node", node.name)
        ready = [c for c in found["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", found["status"]["conditions"]
        assert {"type": "InternalIP", "address": node.address} in found["status"]["addresses"]
    assert first.netns != second.netns and first.address != second.address
    assert first.runtime.socket != second.runtime.socket
    assert [first.state["pod_subnet"], second.state["pod_subnet"]] == [pod_subnet(0), pod_subnet(1)]


def test_a_pod_on_one_node_reaches_a_pod_and_a_service_on_the_other(two_nodes: Cluster, namespace: str) -> None:
    first, second = two_nodes.nodes
    page = f"page-{uuid.uuid4().hex[:8]}"
    serve = f"busybox mkdir -p /www && echo {page} > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    two_nodes.kubectl.apply(pinned("web", two_nodes.image(["/bin/sh", "-c", serve]), second.name), "-n", namespace)
    two_nodes.kubectl.apply(service("web", 80, 8080), "-n", namespace)
    [web] = two_nodes.wait_running(namespace, "app=web", 1)
    address = web["status"]["podIP"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pod_subnet(1)), "the second node's pod subnet"

    # From the first node: the pod's own address (routed over the hub, no NAT), then the Service by name.
    # (busybox's nc: the static busybox's wget crashes in glibc's lookups.)
    fetch = (
        "for target in '{address} 8080' 'web.{namespace}.svc.cluster.local 80'; do ok=;"
        " for i in $(busybox seq 30); do"
        " if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 $target | grep -q {page};"
        ' then echo reached ${{target% *}}; ok=1; break; fi; sleep 1; done; [ -n "$ok" ] || exit 1; done'
    )
    script = fetch.format(address=address, namespace=namespace, page=page)
    client = pinned("client", two_nodes.image(["/bin/sh", "-c", script]), first.name, restartPolicy="Never")
    logs = run_to_completion(two_nodes, namespace, client)
    assert f"reached {address}\n" in logs
    assert f"reached web.{namespace}.svc.cluster.local\n" in logs


def test_pods_on_either_node_read_the_api_server_at_the_one_address_both_reach(
    two_nodes: Cluster, namespace: str
) -> None:
    slice_ = two_nodes.kubectl.get_json("endpointslice", "kubernetes", "-n", "default")
    assert [e["addresses"] for e in slice_["endpoints"]] == [[two_nodes.nodes.hub.host]]
    image = two_nodes.image(["/bin/sh", "-c", READ_THE_API], {"/bin/kubectl": two_nodes.cp.kubectl})
    for index, node in enumerate(two_nodes.nodes):
        reader = pinned(f"reader-{index}", image, node.name, restartPolicy="Never")
        logs = run_to_completion(two_nodes, namespace, reader)
        assert f"user=system:serviceaccount:{namespace}:default" in logs, logs
