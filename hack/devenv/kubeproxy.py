"""A node's kube-proxy (iptables mode, in the node's network namespace) and the endpoints of the ``kubernetes`` Service.

kube-proxy watches Services and EndpointSlices and writes the NAT rules that
make ClusterIPs work, in the tables of the namespace it runs in: the node's
own (``nodenet``), never the machine's. The machine's kernel limits what a
namespace may set, so kube-proxy leaves the conntrack table's size and
timeouts as they are (``maxPerCore: 0`` and zero timeouts).

The API server listens on the machine's 127.0.0.1, which no node can reach,
so a node's cluster runs it without its endpoint reconciler
(``ControlPlane(service_accounts=True)``) and the nodes write the
``kubernetes`` Service's endpoints themselves: the forwarder on the machine's
end of the nodes' hub (forward.py, nodes.py), one address every node reaches.
``kubernetes.default.svc`` (10.0.0.1:443) then reaches the API server from
pods and host-network pods alike, on every node.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .controlplane import ControlPlane
from .nodenet import PODS
from .processes import free_port


def argv(binary: Path, root: Path, *, name: str, address: str) -> list[str]:
    """The kube-proxy command for the node ``name`` at ``address``, after writing its configuration in ``root``."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(root / "kubeconfig")},
        "hostnameOverride": name,
        "bindAddress": address,
        "clusterCIDR": str(PODS),  # every node's pods
        "nodePortAddresses": ["primary"],  # NodePorts on the node's address (not loopback: no route_localnet)
        "healthzBindAddress": f"{address}:{free_port()}",
        "metricsBindAddress": f"{address}:{free_port()}",
        # Limits of the machine's kernel, not the namespace's: leave them alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }
    path = root / "kube-proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return [str(binary), f"--config={path}", "--v=1"]


def publish_apiserver(cp: ControlPlane, address: str, port: int) -> None:
    """The ``kubernetes`` Service's endpoints: ``address:port`` (the node's forwarder to the API server)."""
    port_spec = {"name": "https", "port": port, "protocol": "TCP"}
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [port_spec],
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        # The EndpointSlice above is the one kube-proxy reads; no mirrored copy of this.
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{"addresses": [{"ip": address}], "ports": [port_spec]}],
    }
    for manifest in (slice_, endpoints):
        cp.kubectl_run("apply", "--server-side", "--field-manager=vapor-devenv", "-f", "-", input=json.dumps(manifest))
