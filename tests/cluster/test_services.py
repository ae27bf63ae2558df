"""Services inside the node's cluster: kube-proxy's ClusterIPs and CoreDNS's names (marker cluster)."""

from __future__ import annotations

import json
import uuid

import pytest

from vapor.devenv.clusterdns import SERVICE_ADDRESS
from vapor.devenv.controlplane import KUBERNETES_SERVICE

from ..support.workloads import deployment
from .conftest import Cluster
from .test_node import run_to_completion

pytestmark = pytest.mark.cluster


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
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.kubectl.apply(service, "-n", cluster_namespace)
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
