"""A hermetic Docker engine (and a registry on loopback) for the containers and Docker tests.

One dockerd per test session (its own data root, sockets and pidfile, no bridge,
no iptables), an image made with ``docker import`` from busybox-static, and
unique container names per test; every container a test makes is removed after
it, even when the test fails.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import pytest

# The gateway app, its PAM users and logins, as the gateway tests make them.
from ..gateway.conftest import (  # noqa: F401
    Users,
    app,
    bearer,
    client,
    gateway_config,
    kube,
    login,
    pam_service_name,
    secret_namespace,
    users,
)
from ..support.dockerd import Dockerd
from ..support.registry import Registry
from .containerd import Containerd


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    with Dockerd() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def image(dockerd: Dockerd) -> str:
    """A busybox image that prints a line, then sleeps (so it runs until stopped)."""
    return dockerd.import_image(
        "vapor-test/busybox", "1", cmd=["/bin/sh", "-c", "echo hello from vapor; echo to stderr >&2; exec sleep 600"]
    )


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    with Registry() as running:
        yield running


@pytest.fixture
def docker_client(dockerd: Dockerd) -> Iterator[docker.DockerClient]:
    """The test's own view of the daemon, for what a user would check with the docker CLI."""
    sdk = dockerd.client()
    yield sdk
    sdk.close()


@pytest.fixture
def cname() -> str:
    """A container name no other test uses."""
    return f"vt-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Names or ids of containers to remove (forced) after the test, whatever happened."""
    made: list[str] = []
    yield made
    for ref in made:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(ref, force=True)


@pytest.fixture(scope="session")
def containerd(dockerd: Dockerd, image: str) -> Iterator[Containerd]:
    """A real containerd whose CRI has the pause and busybox images."""
    daemon = Containerd()
    try:
        daemon.start()
        pause = dockerd.import_image("vapor-test/pause", "1", cmd=["/bin/sleep", "1000000"])
        daemon.load_images(dockerd, pause, image)
        yield daemon
    finally:
        daemon.stop()
