"""The release and VM fixtures of the cluster tests (registered for the suite in tests/conftest.py).

Each test module that asks for ``release`` gets its own: the module's
cluster (tests/cluster/conftest.py), the image imported into its node and
``helm install``-ed (release.py). ``vm_namespace`` is a namespace for one
test's VMs, whose leftover domains are removed after it, even on failure.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import libvirt
import pytest

from ..image.build import Built
from .conftest import Cluster
from .release import Release, image_installed


@pytest.fixture(scope="module")
def release(cluster: Cluster, docker_client: docker.DockerClient, image: Built) -> Iterator[Release]:
    with image_installed(cluster, docker_client, image.tag) as installed:
        yield installed


@pytest.fixture(scope="module")
def virt(release: Release) -> Iterator[libvirt.virConnect]:
    """The machine's libvirtd, which the node's agent runs the VMs on."""
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


@pytest.fixture
def vm_namespace(release: Release, virt: libvirt.virConnect) -> Iterator[str]:
    """A namespace for the test's VMs; any domain of it left by a failure is removed after.

    The namespace is deleted and waited for, so that the agent removes the
    domains of its VMs before the module uninstalls the release.
    """
    name = f"c-{uuid.uuid4().hex[:8]}"
    release.cluster.kubectl("create", "namespace", name)
    yield name
    cluster = release.cluster
    if cluster.kubectl("get", "namespace", name, check=False).returncode == 0:  # not deleted by the test
        with contextlib.suppress(AssertionError):  # no agent (a failed uninstall test): removed below instead
            cluster.delete_namespace(name, timeout=60)
    for domain in virt.listAllDomains(0):
        if domain.name().startswith(f"{name}_"):
            if domain.isActive():
                domain.destroy()
            domain.undefine()
