"""The agent's CRI runtime against a real containerd (its CRI plugin): list, details and logs of a pod's container."""

from __future__ import annotations

import pytest

from vapor.agent.host.containers import ContainerError, Containers
from vapor.agent.host.cri import CriRuntime, parse_cri_log
from vapor.agent.host.docker import DockerRuntime

from ..support.wait import eventually
from .containerd import Containerd


async def test_a_pods_container_is_listed_described_and_its_log_read(containerd: Containerd, image: str) -> None:
    _, container_id = await containerd.run_pod(
        "greeter", image, ["/bin/sh", "-c", "echo hello from cri; echo oops >&2; exec sleep 600"]
    )
    containers = Containers([CriRuntime(containerd.socket)])
    listed = await containers.list()
    assert listed["runtime"] == "containerd"
    mine = [c for c in listed["containers"] if c["id"] == container_id]
    assert mine and mine[0]["name"] == "greeter" and mine[0]["state"] == "CONTAINER_RUNNING"
    assert mine[0]["image"] == f"docker.io/{image}" and mine[0]["created_at"].endswith("Z")
    assert mine[0]["pod"].startswith("vapor-test/pod-")

    detail = await containers.get(container_id[:12])  # a unique prefix is enough, as with crictl
    assert detail["id"] == container_id and detail["started_at"] and detail["log_path"]

    async def greeted() -> dict[str, object] | None:
        logs = await containers.logs(container_id)
        return logs if "hello from cri" in str(logs["logs"]) else None

    logs = await eventually(greeted, what="the container's output in its CRI log")
    assert logs["logs"] == "hello from cri\noops\n" or set(str(logs["logs"]).splitlines()) == {"hello from cri", "oops"}
    assert logs["runtime"] == "containerd"


async def test_unknown_cri_container_is_not_found(containerd: Containerd) -> None:
    with pytest.raises(ContainerError) as missing:
        await Containers([CriRuntime(containerd.socket)]).get("0123456789abcdef")
    assert missing.value.code == "NOT_FOUND"


async def test_docker_first_then_cri(containerd: Containerd) -> None:
    """With no Docker daemon answering, the host's CRI runtime serves /containers."""
    containers = Containers([DockerRuntime("unix:///tmp/vapor-no-docker.sock"), CriRuntime(containerd.socket)])
    assert (await containers.list())["runtime"] == "containerd"
    with pytest.raises(ContainerError) as none:
        await containers.list("docker")
    assert none.value.code == "NO_RUNTIME_AVAILABLE"


async def test_no_socket_is_no_runtime_available() -> None:
    with pytest.raises(ContainerError) as none:
        await Containers([CriRuntime("/tmp/vapor-no-containerd.sock")]).list()
    assert none.value.code == "NO_RUNTIME_AVAILABLE" and "no socket" in (none.value.details or "")


def test_cri_log_lines_partial_records_are_joined() -> None:
    data = (
        b"2025-08-02T09:00:00.1Z stdout P Started \n"
        b"2025-08-02T09:00:00.2Z stdout F application\n"
        b"2025-08-02T09:00:01Z stderr F Listening on port 8080\n"
    )
    assert parse_cri_log(data, timestamps=False) == ["Started application", "Listening on port 8080"]
    assert parse_cri_log(data, timestamps=True)[1] == "2025-08-02T09:00:01Z Listening on port 8080"
