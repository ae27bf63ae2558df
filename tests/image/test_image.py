"""The Containerfile, built for real on a Debian base and run: each component's entry point in the image.

The base is not the official python:3.11-slim-bookworm (no registry is
reachable here) but a bookworm rootfs with Debian's python3.11, made with
debootstrap and loaded with ``docker import`` (see base.py). The build reaches
Debian's mirror and PyPI through the host network.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Kubectl
from tests.support.wait import wait_until
from vapor.devenv.processes import free_port

from .conftest import Built, http_get, run_logs

pytestmark = [pytest.mark.image, pytest.mark.controlplane, pytest.mark.timeout(1800)]

COMPONENTS = ["vapor-operator", "vapor-agent", "vapor-gateway"]


def _run(client: docker.DockerClient, image: Built, argv: list[str], **kwargs: object) -> tuple[int, str]:
    """Run a command to its end in a fresh container; its exit code and output."""
    container = client.containers.run(image.tag, argv, detach=True, network_mode="none", **kwargs)
    try:
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, run_logs(container)
    finally:
        container.remove(force=True)


@pytest.fixture
def start_container(docker_client: docker.DockerClient, image: Built) -> Iterator[Callable[..., object]]:
    """Start long-running containers on the host network; each is removed after the test (logs printed on failure)."""
    started: list[docker.models.containers.Container] = []

    def start(argv: list[str], kubeconfig: Path, **kwargs: object) -> docker.models.containers.Container:
        container = docker_client.containers.run(
            image.tag,
            argv,
            detach=True,
            network_mode="host",
            volumes={str(kubeconfig.parent): {"bind": "/kube", "mode": "ro"}},
            environment={"KUBECONFIG": "/kube/kubeconfig", **kwargs.pop("environment", {})},  # type: ignore[dict-item]
            read_only=True,  # as the chart runs them
            tmpfs={"/tmp": ""},
            **kwargs,
        )
        started.append(container)
        return container

    yield start
    for container in started:
        print(f"--- {container.name} ---\n{run_logs(container)[-4000:]}")
        container.remove(force=True)


def test_image_is_small_non_root_and_without_build_tools(docker_client: docker.DockerClient, image: Built) -> None:
    attrs = docker_client.images.get(image.tag).attrs
    assert attrs["Config"]["User"] == "65532:65532"
    assert image.size < 600 * 2**20, f"image is {image.size >> 20} MiB"
    code, out = _run(
        docker_client,
        image,
        [
            "sh",
            "-c",
            "id -u; for t in gcc cc pkg-config; do command -v $t && echo FOUND-$t; done;"
            " ls /usr/include/libvirt 2>/dev/null && echo FOUND-headers; ls /var/lib/apt/lists | wc -l;"
            " for t in blkid qemu-img ip mkfs.xfs mkfs.ext4; do command -v $t; done",
        ],
    )
    assert code == 0, out
    lines = out.split()
    assert lines[0] == "65532"
    assert not [w for w in lines if w.startswith("FOUND-")], out
    assert lines[1] == "0", f"apt lists left in the image: {out}"
    assert len(lines) == 2 + 5, out  # every tool the agent runs is there


@pytest.mark.parametrize("command", COMPONENTS)
def test_each_component_answers_help(docker_client: docker.DockerClient, image: Built, command: str) -> None:
    code, out = _run(docker_client, image, [command, "--help"])
    assert code == 0, out
    assert f"usage: {command}" in out


def test_agent_imports_libvirt_and_the_journal(docker_client: docker.DockerClient, image: Built) -> None:
    # The two compiled extensions load against the runtime libraries alone (no headers in this image).
    code, out = _run(
        docker_client,
        image,
        ["python", "-c", "import libvirt, systemd.journal, pam; print(libvirt.getVersion() > 0)"],
    )
    assert (code, out.strip()) == (0, "True"), out


def test_gateway_starts_against_the_control_plane(
    start_container: Callable[..., docker.models.containers.Container],
    readable_kubeconfig: Path,
    namespace: str,
    kubectl: Kubectl,
) -> None:
    port = free_port()
    container = start_container(
        ["vapor-gateway", f"--bind=127.0.0.1:{port}"],
        readable_kubeconfig,
        environment={"VAPOR_SECRET_NAMESPACE": namespace, "VAPOR_SIGNING_KEY_SECRET": "signing-key"},
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        container.reload()
        assert container.status != "exited", run_logs(container)
        return http_get(f"{base}/readyz")[0] == 200

    wait_until(ready, timeout=90, what="the gateway in the image to be ready")
    status, body = http_get(f"{base}/openapi.json")
    assert status == 200 and json.loads(body)["info"]["title"] == "Vapor"
    # The web console, built in the image's ui stage, at /; its script among the immutable assets.
    status, body = http_get(f"{base}/")
    assert status == 200 and "<title>Vapor</title>" in body, body[:300]
    script = re.search(r'src="(/assets/index-[^"]+\.js)"', body)
    assert script is not None, body
    status, code = http_get(base + script.group(1))
    assert status == 200 and "Log in" in code
    # Unauthenticated calls get the contract's envelope, from the real app.
    status, body = http_get(f"{base}/api/v1/hosts")
    assert status == 401, body
    # The gateway made its signing key Secret in the namespace it was given.
    secret = kubectl.get_json("secret", "signing-key", "-n", namespace)
    assert secret["data"]
    assert "vapor_gateway_http_requests_total" in http_get(f"{base}/metrics")[1]


def test_operator_starts_and_decides(
    start_container: Callable[..., docker.models.containers.Container],
    readable_kubeconfig: Path,
    namespace: str,
    kubectl: Kubectl,
) -> None:
    port = free_port()
    container = start_container(
        ["vapor-operator", f"--liveness=http://127.0.0.1:{port}/healthz"],
        readable_kubeconfig,
        environment={"VAPOR_PLACEMENT_RETRY_INTERVAL": "1"},
    )

    def alive() -> bool:
        container.reload()
        assert container.status != "exited", run_logs(container)
        return http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    wait_until(alive, timeout=90, what="the operator in the image to report ready")
    # It acts on the cluster: a VM pinned to a host that does not exist is declared unschedulable.
    name = f"vm-{uuid.uuid4().hex[:6]}"
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"cpu": 1, "memory": "128Mi", "host": f"nowhere-{name}"},
        }
    )

    def unschedulable() -> bool:
        vm = kubectl.get_json("virtualmachine", name, "-n", namespace)
        return (vm.get("status") or {}).get("phase") == "Unschedulable"

    wait_until(unschedulable, timeout=60, what="the operator in the image to decide on the VM")
