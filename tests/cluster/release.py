"""Vapor installed with ``helm install`` onto the module's kubelet cluster, as README's "Installing on a cluster" says.

The image is the Containerfile's, built by the image tests' fixtures
(tests/image/conftest.py: a hermetic dockerd, layers cached), saved with
``docker save`` and imported into the node's containerd (no registry); the
chart takes it with ``pullPolicy: Never``. The release is named ``vapor`` in
``vapor-system``, as the README installs it. The node's agent talks to the
machine's libvirtd (the node shares the machine's /run/libvirt) and checks
logins with a PAM service made for the test; the gateway's Service is a
NodePort on the node's address, which the machine reaches over the node's
uplink (kube-proxy's rules in the node's namespace take it to the pod).

``helm install --wait`` (helm 3) counts a Deployment or DaemonSet ready once
``replicas - maxUnavailable`` pods are: with the chart's two operators and
one agent per node that is one operator and no agent. So every install and
upgrade here ends with ``kubectl rollout status`` of the three, as the
README's steps do.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx

from ..support.agent import qemu_reachable_dir
from ..support.libvirtd import Libvirtd
from ..support.pam import LinuxUser, linux_accounts, pam_service
from ..support.wait import wait_until
from .conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vapor"
RELEASE, NAMESPACE = "vapor", "vapor-system"
REPOSITORY, TAG = "docker.io/library/vapor", "test"  # what ``docker save`` of vapor:test names it
# What ``kubectl rollout status`` follows: every workload of the release.
WORKLOADS = (f"deployment/{RELEASE}-operator", f"deployment/{RELEASE}-gateway", f"daemonset/{RELEASE}-agent")


def helm_binary() -> Path:
    folder = subprocess.run(
        ["bash", str(REPO / "hack" / "kube-binaries.sh"), "helm"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(folder) / "helm"


def import_image(cluster: Cluster, client: docker.DockerClient, tag: str) -> float:
    """``docker save`` of ``tag`` into every node's containerd; the seconds it took."""
    started = time.monotonic()
    archive = b"".join(client.images.get(tag).save(named=True))
    for node in cluster.nodes:
        node.runtime.import_image(archive)
    return time.monotonic() - started


@dataclass
class Helm:
    """The pinned helm against the cluster, in the release namespace, with folders of its own."""

    cluster: Cluster
    home: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        folders = {f"HELM_{kind}_HOME": str(self.home / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")}
        env = {**os.environ, **folders}
        command = [str(helm_binary()), "--kubeconfig", str(self.cluster.cp.kubeconfig), "--namespace", NAMESPACE]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env)


@dataclass
class Release:
    """The release, what the test made for it, and the operations people do with it."""

    cluster: Cluster
    helm: Helm
    admin: LinuxUser
    values: dict[str, str]  # --set-string of the install; an upgrade changes them
    url: str = ""  # the gateway's Service, by its NodePort on the node's address (a new one each install)
    seconds_to_ready: float = 0.0  # of the last install

    def _helm(self, *args: str) -> float:
        """``helm args`` with the values, then every workload rolled out; the seconds it all took."""
        sets = [arg for key, value in self.values.items() for arg in ("--set-string", f"{key}={value}")]
        started = time.monotonic()
        done = self.helm(*args, "--wait", "--timeout=5m", *sets)
        assert done.returncode == 0, f"helm {args[0]}: {done.stderr}\n{pods_report(self.cluster)}"
        for workload in WORKLOADS:
            rolled = self.cluster.kubectl("rollout", "status", "-n", NAMESPACE, workload, "--timeout=5m", check=False)
            assert rolled.returncode == 0, f"{workload}: {rolled.stderr}\n{pods_report(self.cluster)}"
        service = self.cluster.kubectl.get_json("service", f"{RELEASE}-gateway", "-n", NAMESPACE)
        self.url = f"http://{self.cluster.node.state['address']}:{service['spec']['ports'][0]['nodePort']}"
        return time.monotonic() - started

    def install(self) -> float:
        """``helm install`` (again, after an uninstall) until every pod is Ready; the seconds it took."""
        self.seconds_to_ready = self._helm("install", RELEASE, str(CHART), "--create-namespace")
        return self.seconds_to_ready

    def upgrade(self, **values: str) -> float:
        """``helm upgrade`` with ``values`` changed, until every workload rolled out; the seconds it took."""
        self.values.update(values)
        return self._helm("upgrade", RELEASE, str(CHART))

    def uninstall(self, timeout: float = 120.0) -> float:
        """``helm uninstall`` until no pod of the release is left (helm does not wait for them); seconds."""
        started = time.monotonic()
        done = self.helm("uninstall", RELEASE, "--wait", "--timeout=2m")
        assert done.returncode == 0, done.stderr
        selector = f"app.kubernetes.io/instance={RELEASE}"
        wait_until(lambda: not self.cluster.pods(NAMESPACE, selector), timeout, every=0.5, what="the pods gone")
        return time.monotonic() - started

    def client(self) -> httpx.Client:
        """A REST client of the gateway's Service, logged in as the test's admin (PAM on the node)."""
        login = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": self.admin.name, "password": self.admin.password},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        token = login.json()["data"]["token"]
        return httpx.Client(base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


@contextmanager
def installed(
    cluster: Cluster, extra: dict[str, str] | None = None, prepare: Callable[[Path], None] | None = None
) -> Iterator[Release]:
    """``helm install vapor`` with the test's node, users and folders; uninstalled and removed after.

    ``extra``: more ``--set-string`` values (over the ones here); ``prepare(state)``: called with the
    agents' stateDir before the install (e.g. to give every node its own, ``Node.private``).
    """
    state = qemu_reachable_dir("vapor-cluster-")  # the agent's stateDir on the node: QEMU reaches its disks
    images = state / "images"
    images.mkdir()
    with linux_accounts() as accounts, pam_service() as service, tempfile.TemporaryDirectory() as home:
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        values = {
            "image.repository": REPOSITORY,
            "image.tag": TAG,
            "image.pullPolicy": "Never",
            "agent.stateDir": str(state),
            "agent.imageDirs[0]": str(images),
            "agent.pamService": service,
            "gateway.pamService": service,
            "gateway.adminGroups": admins,
            "gateway.authHosts[0]": cluster.node.name,
            "gateway.service.type": "NodePort",
            **(extra or {}),
        }
        release = Release(cluster, Helm(cluster, Path(home)), admin, values)
        try:
            if prepare is not None:
                prepare(state)
            release.install()
            yield release
        finally:
            release.helm("uninstall", RELEASE, "--wait", "--timeout=2m")
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
            subprocess.run(["rm", "-rf", str(state)], check=False)


@contextmanager
def image_installed(cluster: Cluster, client: docker.DockerClient, tag: str) -> Iterator[Release]:
    """The image ``tag`` imported into the node, then ``installed``, with the machine's libvirtd answering."""
    seconds = import_image(cluster, client, tag)
    print(f"\nimage {tag} imported into the node's containerd in {seconds:.1f}s")
    with Libvirtd() as _, installed(cluster) as release:
        print(f"helm install to every pod Ready: {release.seconds_to_ready:.1f}s")
        yield release


def pods(cluster: Cluster, component: str) -> list[dict[str, Any]]:
    """The release's pods of ``component`` (operator, gateway, agent), terminating ones included."""
    return cluster.pods(NAMESPACE, f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}")


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def fetch_in_cluster(cluster: Cluster, url: str, where: str = f"deployment/{RELEASE}-gateway") -> str:
    """GET ``url`` from inside a pod of the release (its Python), by the cluster's DNS and Services."""
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    done = cluster.kubectl("exec", "-n", NAMESPACE, where, "--", "python3", "-c", code)
    return str(done.stdout)


def metric(cluster: Cluster, pod: str, name: str) -> float:
    """A metric's value as the operator ``pod`` serves it (read inside the pod)."""
    text = fetch_in_cluster(cluster, "http://127.0.0.1:9090/metrics", pod)
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} "))


def pods_report(cluster: Cluster) -> str:
    """The release's pods and the end of each one's log, for a failure's message."""
    report = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout
    for name in cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name", check=False).stdout.split():
        logs = cluster.kubectl("logs", "-n", NAMESPACE, name, "--tail=15", check=False)
        report += f"\n--- {name}\n{logs.stdout}{logs.stderr}"
    return report


def placed_vm(release: Release, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """A diskless VM created through the gateway, once the operator has placed it (``host`` set): its view."""
    with release.client() as api:
        created = api.post("/vms", json={"name": name, "namespace": namespace, "cpu": 1, "memory": "32Mi"})
        assert created.status_code in (200, 201), created.text

        def placed() -> dict[str, Any] | None:
            view: dict[str, Any] = api.get(f"/vms/{name}", params={"namespace": namespace}).json()["data"]
            return view if view.get("host") else None

        return wait_until(placed, timeout, every=0.2, what=f"VM {name} placed")
