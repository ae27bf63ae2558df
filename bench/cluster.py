"""A local cluster (vapor.devenv.Nodes): start to Ready with cached binaries, a pod's start, a namespace's deletion.

Each run starts a fresh control plane and node in a temporary folder; the
figures are the control plane's start, the node's (start to Node Ready), what
cluster DNS adds to it (Node Ready to CoreDNS ready behind kube-dns), a
Deployment of an imported image to its pod Running, and ``kubectl delete
namespace`` of a namespace with two running pods to the namespace gone;
and two nodes started at once to both Ready. Then Vapor on such a cluster, once, as tests/cluster/test_vapor.py installs
it: ``helm install`` of the Containerfile's image (built with the image
tests' cached layers) to every Vapor pod Ready, and VMs created through the
gateway's Service to Running (diskless, started at once), one after the
other; beside them the same VMs through the embedded ``make dev`` stack
(hack/devenv/stack.py: the three components as processes of this machine on
a control plane without a node), so the two are compared in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.cluster.conftest import Cluster
from tests.cluster.release import import_image, installed
from tests.conftest import Kubectl
from tests.image.build import build_image, engine, make_base
from tests.support.gatewayproc import api_client, gateway_answers
from tests.support.libvirtd import Libvirtd
from tests.support.pam import linux_accounts, pam_service
from tests.support.workloads import deployment
from vapor.devenv import ControlPlane, Nodes, binaries
from vapor.devenv.images import image_archive
from vapor.devenv.processes import free_port
from vapor.devenv.stack import Stack

RUNS = 3
VMS = 5  # created to Running one after the other, on each stack
IMAGE = "vapor.local/bench:1"


def _until(probe: Callable[[], bool], timeout: float = 120.0) -> float:
    """Seconds until ``probe()`` is true."""
    start = time.perf_counter()
    while not probe():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the cluster did not get there in time")
        time.sleep(0.1)
    return time.perf_counter() - start


def _run(folder: Path) -> tuple[float, float, float, float, float]:
    start = time.perf_counter()
    cp = ControlPlane(folder, service_accounts=True).up()
    try:
        cp_s = time.perf_counter() - start
        with Nodes(cp) as nodes:
            seconds = nodes.state["seconds"]
            nodes[0].runtime.import_image(image_archive(IMAGE, ["/bin/sleep", "3600"]))
            cp.kubectl_run("create", "namespace", "bench")
            start = time.perf_counter()
            cp.kubectl_run("apply", "-n", "bench", "-f", "-", input=json.dumps(deployment("bench", IMAGE, replicas=2)))

            def running() -> bool:
                pods = json.loads(cp.kubectl_run("get", "pods", "-n", "bench", "-o", "json").stdout)["items"]
                return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

            _until(running)
            pod_s = time.perf_counter() - start
            cp.kubectl_run("delete", "namespace", "bench", "--wait=false")
            gone = _until(lambda: cp.kubectl_run("get", "namespace", "bench", check=False).returncode != 0)
            return cp_s, seconds["nodes_ready"], seconds["dns_ready"], pod_s, gone
    finally:
        cp.down()


def _create_to_running(api: httpx.Client, namespace: str) -> list[float]:
    """Seconds from each VM's POST to it Running (POST /vms, then start with ?wait), VMS of them in turn."""
    seconds = []
    for i in range(VMS):
        start = time.perf_counter()
        vm = {"name": f"b{i}", "namespace": namespace, "cpu": 1, "memory": "32Mi"}
        api.post("/vms", json=vm).raise_for_status()
        started = api.post(f"/vms/b{i}/action", params={"namespace": namespace, "wait": 120}, json={"action": "start"})
        assert started.json()["data"]["phase"] == "Running", started.text
        seconds.append(time.perf_counter() - start)
    return seconds


def _nodes_ready(folder: Path, count: int) -> float:
    """Seconds from starting ``count`` nodes (at once) to every Node Ready, on a control plane already up."""
    with ControlPlane(folder, service_accounts=True) as cp, Nodes(cp, count) as nodes:
        return float(nodes.state["seconds"]["nodes_ready"])


def _vapor(folder: Path) -> tuple[float, list[float]]:
    """Seconds from ``helm install`` to every pod Ready, and from each VM's POST to it Running, in the cluster."""
    with engine() as client:
        built = build_image(client, make_base(client), folder / "build.log")
        with ControlPlane(folder / "cp", service_accounts=True) as cp, Nodes(cp) as nodes:
            cluster = Cluster(cp, nodes, Kubectl(cp))
            import_image(cluster, client, built.tag)
            with Libvirtd(), installed(cluster) as release, release.client() as api:
                namespace = f"bench-{uuid.uuid4().hex[:6]}"
                cp.kubectl_run("create", "namespace", namespace)
                try:
                    return release.seconds_to_ready, _create_to_running(api, namespace)
                finally:
                    cluster.delete_namespace(namespace, timeout=120)  # the agent removes the domains


def _embedded(folder: Path) -> list[float]:
    """Each VM's POST to Running through the embedded ``make dev`` stack (operator, agent, gateway as processes)."""
    with linux_accounts() as accounts, pam_service() as service, ControlPlane(folder / "cp") as cp:
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        env = {
            "KUBECONFIG": str(cp.kubeconfig),
            "PATH": f"{cp.bin_dir}:{os.environ.get('PATH', '')}",
            "VAPOR_PAM_SERVICE": service,
            "VAPOR_ADMIN_GROUPS": admins,
        }
        port, host = free_port(), f"bench-{uuid.uuid4().hex[:6]}"
        stack = Stack(cp.state_dir, env, bind=f"127.0.0.1:{port}", node_name=host)
        for component in stack.components.values():
            component.echo = None  # their logs to their files, not between the figures
        with stack:
            url = f"http://127.0.0.1:{port}"
            _until(lambda: _host_ready(cp, host) and gateway_answers(url), timeout=120)
            with api_client(url, admin) as api:
                namespace = f"bench-{uuid.uuid4().hex[:6]}"
                cp.kubectl_run("create", "namespace", namespace)
                try:
                    return _create_to_running(api, namespace)
                finally:  # no controller manager here to empty a namespace: the VMs one by one (their domains too)
                    for i in range(VMS):
                        api.delete(f"/vms/b{i}", params={"namespace": namespace})
                    _until(lambda: not cp.kubectl_run("get", "virtualmachines", "-n", namespace, "-o", "name").stdout)


def _host_ready(cp: ControlPlane, name: str) -> bool:
    found = cp.kubectl_run("get", "hosts.vapor.io", name, "-o", "json", check=False)
    if found.returncode != 0:
        return False
    conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _spread(samples: list[float]) -> str:
    return f"median {statistics.median(samples):5.2f} s  ({min(samples):.2f}-{max(samples):.2f})"


def main() -> None:
    """Print the median and spread of each figure over a few runs."""
    binaries()
    binaries("node")  # build or find them before timing anything
    binaries("coredns")
    runs = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_run(Path(tmp)))
    labels = (
        "control plane start (cached binaries)",
        "node start to Node Ready",
        "Node Ready to cluster DNS ready",
        "Deployment of 2 pods to Running",
        "namespace with 2 pods deleted",
    )
    for label, samples in zip(labels, zip(*runs, strict=True), strict=True):
        print(f"  {label:<40} median {statistics.median(samples):5.2f} s  ({min(samples):.2f}-{max(samples):.2f})")
    totals = [r[0] + r[1] + r[2] for r in runs]
    print(f"  {'cluster start to DNS ready':<40} median {statistics.median(totals):5.2f} s")
    two = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            two.append(_nodes_ready(Path(tmp), 2))
    label = "two nodes start to both Ready"
    print(f"  {label:<40} median {statistics.median(two):5.2f} s  ({min(two):.2f}-{max(two):.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        helm_s, in_cluster = _vapor(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        embedded = _embedded(Path(tmp))
    print(f"  {'helm install to every Vapor pod Ready':<40} {helm_s:5.2f} s")
    print(f"  VM create to Running, {VMS} VMs one after the other:")
    print(f"  {'  in the cluster (gateway Service, pods)':<40} {_spread(in_cluster)}")
    print(f"  {'  embedded make dev (processes)':<40} {_spread(embedded)}")
