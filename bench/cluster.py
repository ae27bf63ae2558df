"""A local cluster (vapor.devenv.Nodes): start to Ready with cached binaries, a pod's start, a namespace's deletion.

Each run starts a fresh control plane and node in a temporary folder; the
figures are the control plane's start, the node's (start to Node Ready), what
cluster DNS adds to it (Node Ready to CoreDNS ready behind kube-dns), a
Deployment of an imported image to its pod Running, and ``kubectl delete
namespace`` of a namespace with two running pods to the namespace gone.
Then Vapor on such a cluster, once, as tests/cluster/test_vapor.py installs
it: ``helm install`` of the Containerfile's image (built with the image
tests' cached layers) to every Vapor pod Ready, and a VM created through the
gateway's Service to Running (diskless, started at once).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.cluster.conftest import Cluster
from tests.cluster.release import import_image, installed
from tests.conftest import Kubectl
from tests.image.build import build_image, engine, make_base
from tests.support.libvirtd import Libvirtd
from tests.support.workloads import deployment
from vapor.devenv import ControlPlane, Nodes, binaries
from vapor.devenv.images import image_archive

RUNS = 3
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


def _vapor(folder: Path) -> tuple[float, float]:
    """Seconds from ``helm install`` to every pod Ready, and from a VM's POST to it Running."""
    with engine() as client:
        built = build_image(client, make_base(client), folder / "build.log")
        with ControlPlane(folder / "cp", service_accounts=True) as cp, Nodes(cp) as nodes:
            cluster = Cluster(cp, nodes, Kubectl(cp))
            import_image(cluster, client, built.tag)
            with Libvirtd(), installed(cluster) as release, release.client() as api:
                cp.kubectl_run("create", "namespace", "bench")
                start = time.perf_counter()
                api.post(
                    "/vms", json={"name": "b", "namespace": "bench", "cpu": 1, "memory": "32Mi"}
                ).raise_for_status()
                started = api.post(
                    "/vms/b/action", params={"namespace": "bench", "wait": 120}, json={"action": "start"}
                )
                assert started.json()["data"]["phase"] == "Running", started.text
                running = time.perf_counter() - start
                cluster.delete_namespace("bench", timeout=120)  # the agent removes the domain
                return release.seconds_to_ready, running


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
    with tempfile.TemporaryDirectory() as tmp:
        helm_s, vm_s = _vapor(Path(tmp))
    print(f"  {'helm install to every Vapor pod Ready':<40} {helm_s:5.2f} s")
    print(f"  {'in-cluster VM create to Running':<40} {vm_s:5.2f} s")
