"""A local cluster (vapor.devenv.Node): start to Node Ready with cached binaries, a pod's start, a namespace's deletion.

Each run starts a fresh control plane and node in a temporary folder; the
figures are the control plane's start, the node's (start to Node Ready), what
cluster DNS adds to it (Node Ready to CoreDNS ready behind kube-dns), a
Deployment of an imported image to its pod Running, and ``kubectl delete
namespace`` of a namespace with two running pods to the namespace gone.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.workloads import deployment
from vapor.devenv import ControlPlane, Node, binaries
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
        with Node(cp) as node:
            seconds = node.state["seconds"]
            node.runtime.import_image(image_archive(IMAGE, ["/bin/sleep", "3600"]))
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
            return cp_s, seconds["node_ready"], seconds["dns_ready"], pod_s, gone
    finally:
        cp.down()


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
