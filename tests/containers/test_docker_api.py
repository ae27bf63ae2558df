"""The Docker and containers endpoints through the gateway, against a real dockerd on the host's agent.

Gateway (real app, real logins) -> node-local API over TLS (real TokenReview)
-> the agent's Docker runtime -> the hermetic dockerd. What a user sees
through REST is checked against what the Docker daemon itself says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import docker
import pytest

from vapor.devenv.processes import free_port
from vapor.kube import Kube

from ..conftest import Kubectl
from ..support.dockerd import Dockerd
from ..support.registry import Registry
from ..support.wait import eventually
from .conftest import Users
from .rest import Rest, rest_for_host


@pytest.fixture
async def rest(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users, dockerd: Dockerd
) -> AsyncIterator[Rest]:
    async with rest_for_host(kube, kubectl, namespace, gateway_config, users, docker_host=dockerd.base_url) as api:
        yield api


async def test_create_start_logs_stop_delete(
    rest: Rest, image: str, cname: str, cleanup: list[str], docker_client: docker.DockerClient
) -> None:
    cleanup.append(cname)
    made = await rest.data(
        "POST",
        "/docker/containers",
        json={"name": cname, "image": image, "env": ["MODE=test"], "portBindings": {"80/tcp": [{"hostPort": "18081"}]}},
        status=201,
    )
    assert made["name"] == cname and made["state"] == "created"
    assert "MODE=test" in docker_client.containers.get(cname).attrs["Config"]["Env"]

    ps = await rest.data("GET", "/docker/ps")
    mine = [c for c in ps["containers"] if c["names"] == [f"/{cname}"]]
    assert len(mine) == 1 and mine[0]["state"] == "created" and mine[0]["id"] == made["id"][:12]

    started = await rest.data("POST", f"/docker/containers/{cname}/start")
    assert started["state"] == "running"
    assert docker_client.containers.get(cname).status == "running"

    async def greeted() -> Any:
        logs = await rest.data("GET", f"/containers/{made['id']}/logs?tail=50")
        return logs if "hello from vapor" in logs["logs"] else None

    logs = await eventually(greeted, what="the container's output through REST")
    assert logs["container_id"] == made["id"] and logs["runtime"] == "docker"

    listed = await rest.data("GET", "/containers")
    assert listed["runtime"] == "docker" and listed["count"] == len(listed["containers"])
    entry = next(c for c in listed["containers"] if c["id"] == made["id"])
    assert entry["name"] == cname and entry["state"] == "CONTAINER_RUNNING" and entry["image"] == image

    detail = await rest.data("GET", f"/containers/{cname}?runtime=docker")
    assert detail["id"] == made["id"] and detail["port_bindings"] == {"80/tcp": [{"hostPort": "18081"}]}
    assert detail["started_at"].endswith("Z") and detail["exit_code"] is None

    status, refused = await rest.call("DELETE", f"/docker/containers/{cname}")
    assert status == 409 and refused["error"]["code"] == "DOCKER_ERROR", refused
    assert "stop the container" in refused["error"]["message"].lower()
    assert docker_client.containers.get(cname).status == "running"  # refused means untouched

    stopped = await rest.data("POST", f"/docker/containers/{cname}/stop?timeout=1")
    assert stopped["state"] == "exited"
    assert docker_client.containers.get(cname).status == "exited"
    exited = await rest.data("GET", f"/containers/{cname}")
    assert exited["state"] == "CONTAINER_EXITED" and exited["exit_code"] is not None

    removed = await rest.data("DELETE", f"/docker/containers/{cname}")
    assert removed["removed"] is True
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(cname)
    status, gone = await rest.call("GET", f"/containers/{cname}")
    assert status == 404 and gone["error"]["code"] == "NOT_FOUND"


async def test_viewer_reads_but_does_not_change(rest: Rest, image: str, cname: str, cleanup: list[str]) -> None:
    cleanup.append(cname)
    await rest.data("POST", "/docker/containers", json={"name": cname, "image": image}, status=201)
    status, body = await rest.call("GET", "/docker/ps", as_viewer=True)
    assert status == 200 and any(c["names"] == [f"/{cname}"] for c in body["data"]["containers"])
    status, body = await rest.call("POST", f"/docker/containers/{cname}/start", as_viewer=True)
    assert status == 403 and body["error"]["code"] == "PERMISSION_DENIED"
    # a container's output may hold secrets: its logs are for admins
    status, body = await rest.call("GET", f"/containers/{cname}/logs", as_viewer=True)
    assert status == 403 and body["error"]["code"] == "PERMISSION_DENIED", body
    assert (await rest.call("GET", f"/containers/{cname}/logs"))[0] == 200


async def test_daemon_refusals_are_docker_errors(rest: Rest, image: str, cname: str, cleanup: list[str]) -> None:
    cleanup.append(cname)
    status, body = await rest.call("POST", "/docker/containers", json={"name": cname, "image": "vapor-test/absent:9"})
    assert (
        status == 404
        and body["error"]["code"] == "DOCKER_ERROR"
        and "no such image" in body["error"]["message"].lower()
    )

    await rest.data("POST", "/docker/containers", json={"name": cname, "image": image}, status=201)
    status, body = await rest.call("POST", "/docker/containers", json={"name": cname, "image": image})
    assert status == 409 and body["error"]["code"] == "DOCKER_ERROR" and "already in use" in body["error"]["message"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/start"), ("POST", "/stop"), ("DELETE", "")])
async def test_unknown_container_is_not_found(rest: Rest, method: str, path: str) -> None:
    status, body = await rest.call(method, f"/docker/containers/vapor-no-such-container{path}")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND", body


async def test_pull_from_a_registry_on_loopback(
    rest: Rest, image: str, registry: Registry, docker_client: docker.DockerClient
) -> None:
    repository = f"{registry.address}/vapor/pulled"
    docker_client.images.get(image).tag(repository, "v2")
    for event in docker_client.api.push(repository, tag="v2", stream=True, decode=True):
        assert "error" not in event, event
    docker_client.images.remove(f"{repository}:v2")

    pulled = await rest.data("POST", "/docker/images/pull", json={"imageName": repository, "tag": "v2"})
    assert pulled["image"] == f"{repository}:v2" and pulled["digest"].startswith("sha256:")
    assert docker_client.images.get(f"{repository}:v2").id == pulled["id"]

    status, body = await rest.call("POST", "/docker/images/pull", json={"imageName": repository, "tag": "nope"})
    assert status == 404 and body["error"]["code"] == "DOCKER_ERROR" and "not found" in body["error"]["message"]


async def test_pull_from_an_unreachable_registry_is_a_docker_error(rest: Rest) -> None:
    status, body = await rest.call(
        "POST", "/docker/images/pull", json={"imageName": f"127.0.0.1:{free_port()}/vapor/none", "tag": "v1"}
    )
    assert status == 502 and body["error"]["code"] == "DOCKER_ERROR", body
    assert "connection refused" in body["error"]["message"]


async def test_a_host_without_a_runtime(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users
) -> None:
    async with rest_for_host(kube, kubectl, namespace, gateway_config, users, docker_host="", cri_sockets=()) as api:
        for path in ("/containers", "/containers/abc", "/containers/abc/logs", "/docker/ps"):
            status, body = await api.call("GET", path)
            assert status == 503 and body["error"]["code"] == "NO_RUNTIME_AVAILABLE", (path, body)
