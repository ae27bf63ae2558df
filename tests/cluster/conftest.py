"""One real cluster for a test module: its own control plane and kubelet nodes (vapor.devenv.Nodes).

The control plane is the module's own, not the session's: the scheduler and
the controller manager would otherwise place and garbage-collect the objects
of every other test. Fixtures: ``cluster`` (one node) and ``two_nodes`` (two
nodes, each in its own network namespace with its own containerd, kubelet,
kube-proxy and pod subnet, routed to each other). Images reach every node's
containerd through ``ctr images import`` (no registry); pods take them with
``imagePullPolicy: Never``.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vapor.devenv import ControlPlane, Node, Nodes
from vapor.devenv.images import busybox_rootfs, image_archive

from ..conftest import Kubectl
from ..support.wait import wait_until


@dataclass
class Cluster:
    cp: ControlPlane
    nodes: Nodes
    kubectl: Kubectl

    @property
    def node(self) -> Node:
        """The first node (the only one of a one-node cluster)."""
        return self.nodes[0]

    def image(self, command: list[str], extra: dict[str, Path] | None = None) -> str:
        """A busybox image (plus ``extra`` files: path in the image -> file here) running ``command``.

        Imported into every node under a name no other test uses.
        """
        reference = f"vapor.local/test-{uuid.uuid4().hex[:8]}:1"
        layer = io.BytesIO(busybox_rootfs())
        with tarfile.open(fileobj=layer, mode="a") as tar:
            for inside, source in (extra or {}).items():
                tar.add(str(source), arcname=inside.lstrip("/"))
        archive = image_archive(reference, command, layer.getvalue())
        for node in self.nodes:
            node.runtime.import_image(archive)
        return reference

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = self.kubectl.get_json("pods", "-n", namespace, "-l", selector)
        return list(found["items"])

    def wait_running(self, namespace: str, selector: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        def running() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(namespace, selector) if "deletionTimestamp" not in p["metadata"]]
            ok = len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)
            return pods if ok else None

        return wait_until(running, timeout, every=0.5, what=f"{count} Running pods {selector} in {namespace}")

    def delete_namespace(self, namespace: str, timeout: float = 90.0) -> float:
        """``kubectl delete namespace`` and wait until it is gone (the controller manager emptied it); seconds."""
        started = time.monotonic()
        self.kubectl("delete", "namespace", namespace, "--wait=false")
        wait_until(
            lambda: self.kubectl("get", "namespace", namespace, check=False).returncode != 0,
            timeout,
            every=0.5,
            what=f"namespace {namespace} to be gone",
        )
        return time.monotonic() - started

    def running_in(self, namespace: str) -> list[str]:
        """Ids of the nodes' running containers (pods' sandboxes included) that belong to ``namespace``."""
        label = f'labels."io.kubernetes.pod.namespace"=={namespace}'
        found = []
        for node in self.nodes:
            listed = node.runtime.ctr("containers", "ls", "-q", label)
            tasks = node.runtime.ctr("tasks", "ls")  # TASK PID STATUS
            assert listed.returncode == 0 and tasks.returncode == 0, listed.stderr + tasks.stderr
            running = {line.split()[0] for line in tasks.stdout.decode().splitlines()[1:] if line.endswith("RUNNING")}
            found += [container for container in listed.stdout.decode().split() if container in running]
        return found


@contextlib.contextmanager
def started(folder: Path, count: int) -> Iterator[Cluster]:
    """A control plane in ``folder`` and ``count`` nodes started at once; all of it removed after."""
    with ControlPlane(folder, service_accounts=True) as cp, Nodes(cp, count) as nodes:
        yield Cluster(cp, nodes, Kubectl(cp))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A one-node cluster for the module."""
    with started(tmp_path_factory.mktemp("cluster"), 1) as made:
        yield made


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A two-node cluster for the module (``cluster.nodes[0]``, ``cluster.nodes[1]``)."""
    with started(tmp_path_factory.mktemp("cluster"), 2) as made:
        print(f"\ntwo nodes Ready in {made.nodes.state['seconds']['nodes_ready']:.1f}s")
        yield made


@contextlib.contextmanager
def scratch_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own, deleted after (without waiting: the controller manager empties it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def cluster_namespace(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster) as name:
        yield name
