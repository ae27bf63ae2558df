"""A real kubelet node runs pods, kube-controller-manager reconciles, Services and DNS work (marker cluster).

One cluster for the module: kube-proxy's ClusterIPs and CoreDNS's names are
tested here too rather than on a cluster of their own (CI's time).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from vapor.devenv.clusterdns import SERVICE_ADDRESS
from vapor.devenv.containerd import POD_SUBNET
from vapor.devenv.controlplane import KUBERNETES_SERVICE

from ..support.wait import wait_until
from ..support.workloads import deployment, service
from .conftest import Cluster

pytestmark = pytest.mark.cluster


def test_the_node_is_ready_at_the_control_planes_version_with_containerd(cluster: Cluster) -> None:
    node = cluster.kubectl.get_json("node", cluster.node.name)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
    info = node["status"]["nodeInfo"]
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert info["kubeletVersion"] == server
    assert info["containerRuntimeVersion"].startswith("containerd://")


def test_a_deployment_of_an_imported_image_runs_on_the_node_and_logs(cluster: Cluster, cluster_namespace: str) -> None:
    greeting = f"hello {uuid.uuid4().hex[:8]}"
    image = cluster.image(["/bin/sh", "-c", f"echo {greeting}; exec sleep 3600"])
    cluster.kubectl.apply(deployment("hello", image), "-n", cluster_namespace)

    # The scheduler placed it, the controller manager made its ReplicaSet and pod, the kubelet ran it.
    [pod] = cluster.wait_running(cluster_namespace, "app=hello", 1)
    assert pod["spec"]["nodeName"] == cluster.node.name
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_SUBNET)  # the CNI bridge's
    # The API server reaches the kubelet for logs (its admin certificate, the node's address).
    logs = wait_until(
        lambda: greeting in cluster.kubectl("logs", "-n", cluster_namespace, pod["metadata"]["name"]).stdout,
        30,
        what="the pod's log line",
    )
    assert logs


def test_deleting_a_namespace_deletes_its_objects_and_stops_its_pods(cluster: Cluster) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    image = cluster.image(["/bin/sleep", "3600"])
    cluster.kubectl.apply(deployment("doomed", image, replicas=2), "-n", namespace)
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=a=b")
    cluster.wait_running(namespace, "app=doomed", 2)
    assert len(cluster.running_in(namespace)) == 4, "two pods, each a sandbox and a container, run on the node"

    seconds = cluster.delete_namespace(namespace)
    print(f"namespace deleted with its objects in {seconds:.1f}s")
    for kind in ("deployments", "replicasets", "pods", "configmaps"):
        listed = cluster.kubectl.get_json(kind, "-n", namespace)
        assert listed["items"] == [], kind
    wait_until(lambda: not cluster.running_in(namespace), 30, what="the node to stop the pods' containers")


def test_the_kubelets_readiness_probe_reaches_the_pod(cluster: Cluster, cluster_namespace: str) -> None:
    # busybox's httpd serves /bin; the probe asks for a file there. Outside the node's network a
    # probe of a pod address would reach some other host (on this machine an upstream proxy's 404).
    image = cluster.image(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/bin"])
    served = deployment("served", image)
    served["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/busybox", "port": 8080},
        "periodSeconds": 1,
    }
    cluster.kubectl.apply(served, "-n", cluster_namespace)
    [pod] = cluster.wait_running(cluster_namespace, "app=served", 1)

    def ready() -> bool:
        [current] = cluster.pods(cluster_namespace, "app=served")
        conditions = current["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_until(ready, 30, what=f"pod {pod['metadata']['name']} Ready by its probe")


def run_to_completion(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> str:
    """Apply a pod that runs once; wait until it Succeeded, and return its log."""
    cluster.kubectl.apply(pod, "-n", namespace)
    name = pod["metadata"]["name"]

    def finished() -> str | None:
        phase = cluster.kubectl.get_json("pod", name, "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(finished, 60, every=0.5, what=f"pod {name} to finish")
    logs = cluster.kubectl("logs", "-n", namespace, name).stdout
    assert phase == "Succeeded", logs
    return logs


READ_THE_API = "kubectl get --raw /version && kubectl auth whoami -o jsonpath='user={.status.userInfo.username}'"


def test_a_pod_reads_the_api_server_as_its_service_account(cluster: Cluster, cluster_namespace: str) -> None:
    # kubectl (a static binary) in the pod takes the in-cluster configuration: the kubernetes
    # Service's address from the environment, the ServiceAccount token mounted by the kubelet.
    image = cluster.image(["/bin/sh", "-c", READ_THE_API], {"/bin/kubectl": cluster.cp.kubectl})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "reader", "image": image, "imagePullPolicy": "Never"}],
        },
    }
    logs = run_to_completion(cluster, cluster_namespace, pod)
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert f'"gitVersion": "{server}"' in logs
    assert f"user=system:serviceaccount:{cluster_namespace}:default" in logs


def test_a_host_network_pod_with_the_hosts_root_reads_the_api_server(cluster: Cluster, cluster_namespace: str) -> None:
    # As the chart's agent runs: the node's network, the host's / mounted with HostToContainer
    # propagation (containerd refuses it where / is a private mount, as on this machine).
    script = f"cat /host/etc/debian_version && {READ_THE_API}"
    image = cluster.image(["/bin/sh", "-c", script], {"/bin/kubectl": cluster.cp.kubectl})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostly"},
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [
                {
                    "name": "hostly",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "volumeMounts": [
                        {"name": "host", "mountPath": "/host", "readOnly": True, "mountPropagation": "HostToContainer"}
                    ],
                }
            ],
        },
    }
    logs = run_to_completion(cluster, cluster_namespace, pod)
    assert logs.splitlines()[0] == Path("/etc/debian_version").read_text().strip()
    assert f"user=system:serviceaccount:{cluster_namespace}:default" in logs
    status = cluster.kubectl.get_json("pod", "hostly", "-n", cluster_namespace)["status"]
    assert status["podIP"] == cluster.node.state["address"], "the node's own address"


def once(name: str, image: str) -> dict[str, object]:
    """A pod that runs ``image`` once, with the cluster's DNS (the default ClusterFirst policy)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": name, "image": image, "imagePullPolicy": "Never"}]},
    }


def test_a_pod_resolves_the_api_servers_name_and_reads_it_by_that_name(
    cluster: Cluster, cluster_namespace: str
) -> None:
    name = "kubernetes.default.svc.cluster.local"
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"cat /etc/resolv.conf; busybox nslookup {name};"
        f" kubectl --server=https://kubernetes.default.svc --token=$(cat {account}/token)"
        f" --certificate-authority={account}/ca.crt get --raw /version"
    )
    image = cluster.image(["/bin/sh", "-c", script], {"/bin/kubectl": cluster.cp.kubectl})
    logs = run_to_completion(cluster, cluster_namespace, once("resolver", image))
    assert f"nameserver {SERVICE_ADDRESS}" in logs
    assert f"Address: {KUBERNETES_SERVICE}" in logs.split(name, 1)[1], logs
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert f'"gitVersion": "{server}"' in logs


def test_a_pod_reaches_another_deployment_through_its_service_by_short_name(
    cluster: Cluster, cluster_namespace: str
) -> None:
    page = f"page-{uuid.uuid4().hex[:8]}"
    serve = f"busybox mkdir -p /www && echo {page} > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    served = cluster.image(["/bin/sh", "-c", serve])
    cluster.kubectl.apply(deployment("web", served, replicas=2), "-n", cluster_namespace)
    cluster.kubectl.apply(service("web", 80, 8080), "-n", cluster_namespace)
    cluster.wait_running(cluster_namespace, "app=web", 2)
    # The short name by the pod's search domains, port 80 by kube-proxy's rules to a pod's 8080. (busybox's
    # own resolver and nc: the static busybox's wget crashes in glibc's lookups, even of an address.)
    fetch = (
        "address=$(busybox nslookup web | busybox awk '/^Address: /{a=$2} END{print a}'); echo address=$address;"
        " for i in $(busybox seq 30); do"
        " printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 $address 80 && exit 0; sleep 1; done; exit 1"
    )
    client = cluster.image(["/bin/sh", "-c", fetch])
    logs = run_to_completion(cluster, cluster_namespace, once("client", client))
    address = cluster.kubectl.get_json("service", "web", "-n", cluster_namespace)["spec"]["clusterIP"]
    assert f"address={address}\n" in logs
    assert page in logs
