"""/containers through the gateway on a host whose runtime is containerd (its CRI), no Docker.

Gateway -> node-local API -> the agent's CRI client -> a real containerd with a
real pod made through the CRI the way a kubelet makes one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from vapor.kube import Kube

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import Users
from .containerd import Containerd
from .rest import Rest, rest_for_host


@pytest.fixture
async def rest(
    kube: Kube,
    kubectl: Kubectl,
    namespace: str,
    gateway_config: dict[str, Any],
    users: Users,
    containerd: Containerd,
) -> AsyncIterator[Rest]:
    runtimes = {"docker_host": "", "cri_sockets": ("/tmp/vapor-no-crio.sock", containerd.socket)}
    async with rest_for_host(kube, kubectl, namespace, gateway_config, users, **runtimes) as api:
        yield api


async def test_containers_of_a_containerd_host(rest: Rest, containerd: Containerd, image: str) -> None:
    _, container_id = await containerd.run_pod("web", image, ["/bin/sh", "-c", "echo serving on 8080; exec sleep 600"])
    listed = await rest.data("GET", "/containers")
    assert listed["runtime"] == "containerd"
    entry = next(c for c in listed["containers"] if c["id"] == container_id)
    assert entry["name"] == "web" and entry["state"] == "CONTAINER_RUNNING" and entry["runtime"] == "containerd"
    assert entry["pod"].startswith("vapor-test/")

    detail = await rest.data("GET", f"/containers/{container_id}")
    assert detail["image"] == f"docker.io/{image}" and detail["log_path"].endswith("web.log")

    async def served() -> Any:
        logs = await rest.data("GET", f"/containers/{container_id}/logs?timestamps=true")
        return logs if "serving on 8080" in logs["logs"] else None

    logs = await eventually(served, what="the container's CRI log through REST")
    assert logs["runtime"] == "containerd" and logs["logs"][:4].isdigit()  # each line starts with its time

    status, body = await rest.call("GET", "/containers/ffffffffffff")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = await rest.call("GET", "/containers?runtime=docker")
    assert status == 503 and body["error"]["code"] == "NO_RUNTIME_AVAILABLE"
    status, body = await rest.call("GET", "/docker/ps")  # Docker endpoints need Docker, not a CRI runtime
    assert status == 503 and body["error"]["code"] == "NO_RUNTIME_AVAILABLE"
