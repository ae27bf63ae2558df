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
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx

from ..support.agent import qemu_reachable_dir
from ..support.pam import LinuxUser, linux_accounts, pam_service
from .conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vapor"
RELEASE, NAMESPACE = "vapor", "vapor-system"
REPOSITORY, TAG = "docker.io/library/vapor", "test"  # what ``docker save`` of vapor:test names it


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
    """The installed release and what the test made for it."""

    cluster: Cluster
    helm: Helm
    url: str  # the gateway's Service, by its NodePort on the node's address
    admin: LinuxUser
    seconds_to_ready: float

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
def installed(cluster: Cluster) -> Iterator[Release]:
    """``helm install vapor`` with the test's node, users and folders; uninstalled and removed after."""
    state = qemu_reachable_dir("vapor-cluster-")  # the agent's stateDir on the node: QEMU reaches its disks
    images = state / "images"
    images.mkdir()
    with linux_accounts() as accounts, pam_service() as service, tempfile.TemporaryDirectory() as home:
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        helm = Helm(cluster, Path(home))
        node = cluster.node.name
        values = {
            "image.repository": REPOSITORY,
            "image.tag": TAG,
            "image.pullPolicy": "Never",
            "agent.stateDir": str(state),
            "agent.imageDirs[0]": str(images),
            "agent.pamService": service,
            "gateway.pamService": service,
            "gateway.adminGroups": admins,
            "gateway.authHosts[0]": node,
            "gateway.service.type": "NodePort",
        }
        sets = [arg for key, value in values.items() for arg in ("--set-string", f"{key}={value}")]
        started = time.monotonic()
        try:
            done = helm("install", RELEASE, str(CHART), "--create-namespace", "--wait", "--timeout=5m", *sets)
            assert done.returncode == 0, f"helm install: {done.stderr}\n{pods_report(cluster)}"
            seconds = time.monotonic() - started
            service_json = cluster.kubectl.get_json("service", f"{RELEASE}-gateway", "-n", NAMESPACE)
            port = service_json["spec"]["ports"][0]["nodePort"]
            url = f"http://{cluster.node.state['address']}:{port}"
            yield Release(cluster, helm, url, admin, seconds)
        finally:
            helm("uninstall", RELEASE, "--wait", "--timeout=2m")
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
            subprocess.run(["rm", "-rf", str(state)], check=False)


def pods_report(cluster: Cluster) -> str:
    """The release's pods and the end of each one's log, for a failure's message."""
    report = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout
    for name in cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name", check=False).stdout.split():
        logs = cluster.kubectl("logs", "-n", NAMESPACE, name, "--tail=15", check=False)
        report += f"\n--- {name}\n{logs.stdout}{logs.stderr}"
    return report
