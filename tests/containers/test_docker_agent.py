"""The agent's Docker runtime against a real, hermetic dockerd: the operations behind /docker/... and /containers.

These call the agent's code directly (no gateway); tests/containers/test_*_api.py
go through the gateway's REST endpoints.
"""

from __future__ import annotations

import docker
import pytest

from vapor.agent.host.containers import ContainerError, Containers
from vapor.agent.host.docker import DockerRuntime
from vapor.agentapi.dockerspec import CreateContainerRequest, PullImageRequest

from ..support.dockerd import Dockerd
from ..support.registry import Registry
from ..support.wait import eventually


@pytest.fixture
def runtime(dockerd: Dockerd) -> DockerRuntime:
    return DockerRuntime(dockerd.base_url)


async def test_create_start_logs_stop_remove(
    runtime: DockerRuntime, image: str, cname: str, cleanup: list[str], docker_client: docker.DockerClient
) -> None:
    cleanup.append(cname)
    made = await runtime.create(
        CreateContainerRequest(
            name=cname, image=image, env=["GREETING=hi"], portBindings={"80/tcp": [{"hostPort": "18080"}]}
        )
    )
    assert made["name"] == cname and made["state"] == "created"
    seen = docker_client.containers.get(cname)
    assert seen.status == "created"
    assert "GREETING=hi" in seen.attrs["Config"]["Env"]
    assert seen.attrs["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "18080"}]}

    started = await runtime.start(cname)
    assert started["state"] == "running"
    assert docker_client.containers.get(cname).status == "running"

    containers = Containers([runtime])
    logs = await eventually(lambda: _logs_with(containers, cname, "hello from vapor"), what="the container's output")
    assert "to stderr" in logs["logs"] and logs["runtime"] == "docker" and logs["container_id"] == made["id"]

    listed = await containers.list()
    assert listed["runtime"] == "docker"
    mine = [c for c in listed["containers"] if c["name"] == cname]
    assert mine and mine[0]["state"] == "CONTAINER_RUNNING" and mine[0]["image"] == image
    assert mine[0]["created_at"].endswith("Z")

    detail = await containers.get(cname)
    assert detail["id"] == made["id"] and detail["port_bindings"] == {"80/tcp": [{"hostPort": "18080"}]}

    with pytest.raises(ContainerError) as refused:
        await runtime.remove(cname)
    assert refused.value.code == "DOCKER_ERROR" and refused.value.status == 409
    assert "running" in refused.value.message.lower()
    assert docker_client.containers.get(cname).status == "running"  # nothing was done

    stopped = await runtime.stop(cname, timeout=1)
    assert stopped["state"] == "exited"
    removed = await runtime.remove(cname)
    assert removed["removed"] is True
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(cname)


async def _logs_with(containers: Containers, ref: str, text: str) -> dict[str, object] | None:
    logs = await containers.logs(ref)
    return logs if text in str(logs["logs"]) else None


async def test_ps_lists_names_state_and_status(
    runtime: DockerRuntime, image: str, cname: str, cleanup: list[str]
) -> None:
    cleanup.append(cname)
    await runtime.create(CreateContainerRequest(name=cname, image=image))
    ps = await runtime.ps()
    mine = [c for c in ps["containers"] if c["names"] == [f"/{cname}"]]
    assert len(mine) == 1
    assert mine[0]["state"] == "created" and mine[0]["status"] == "Created" and mine[0]["image"] == image


async def test_unknown_container_is_not_found(runtime: DockerRuntime) -> None:
    for operation in (runtime.start, runtime.stop, runtime.remove, runtime.container):
        with pytest.raises(ContainerError) as missing:
            await operation("no-such-container-here")
        assert missing.value.code == "NOT_FOUND" and missing.value.status == 404


async def test_image_not_on_the_host_is_a_docker_error(runtime: DockerRuntime, cname: str) -> None:
    with pytest.raises(ContainerError) as failed:
        await runtime.create(CreateContainerRequest(name=cname, image="vapor-test/not-here:1"))
    assert failed.value.code == "DOCKER_ERROR"
    assert "no such image" in failed.value.message.lower()


async def test_pull_from_a_local_registry(
    runtime: DockerRuntime, image: str, registry: Registry, docker_client: docker.DockerClient
) -> None:
    repository = f"{registry.address}/vapor/tiny"
    docker_client.images.get(image).tag(repository, "v1")
    for event in docker_client.api.push(repository, tag="v1", stream=True, decode=True):
        assert "error" not in event, event
    docker_client.images.remove(f"{repository}:v1")
    pulled = await runtime.pull(PullImageRequest(imageName=repository, tag="v1"))
    assert pulled["image"] == f"{repository}:v1"
    assert pulled["digest"] and pulled["digest"].startswith("sha256:")
    assert docker_client.images.get(f"{repository}:v1").id == pulled["id"]


async def test_pull_from_an_unreachable_registry_is_a_docker_error(runtime: DockerRuntime) -> None:
    from vapor.devenv.processes import free_port

    with pytest.raises(ContainerError) as failed:
        await runtime.pull(PullImageRequest(imageName=f"127.0.0.1:{free_port()}/vapor/nothing", tag="v1"))
    assert failed.value.code == "DOCKER_ERROR"
    assert "connection refused" in failed.value.message


async def test_no_daemon_is_no_runtime_available(tmp_path: object) -> None:
    containers = Containers([DockerRuntime("unix:///tmp/vapor-no-docker-here.sock")])
    with pytest.raises(ContainerError) as none:
        await containers.list()
    assert none.value.code == "NO_RUNTIME_AVAILABLE" and none.value.status == 503
    assert "docker" in (none.value.details or "")


async def test_node_api_dispatch_table(dockerd: Dockerd, image: str, cname: str, cleanup: list[str]) -> None:
    from vapor.agent._config import AgentConfig
    from vapor.agent.nodeapi.containers import ContainerEndpoints

    cleanup.append(cname)
    endpoints = ContainerEndpoints.from_config(AgentConfig(node_name="n", docker_host=dockerd.base_url, cri_sockets=()))
    status, made = await endpoints.dispatch("POST", "/docker/containers", body={"name": cname, "image": image})
    assert status == 201 and made["name"] == cname
    status, listed = await endpoints.dispatch("GET", "/containers", {"runtime": "docker"})
    assert status == 200 and cname in [c["name"] for c in listed["containers"]]
    with pytest.raises(ContainerError) as bad:
        await endpoints.dispatch("POST", "/docker/containers", body={"name": cname, "image": image, "x": 1})
    assert bad.value.code == "INVALID_INPUT"
    with pytest.raises(ContainerError) as bad:
        await endpoints.dispatch("GET", f"/containers/{cname}/logs", {"tail": "many"})
    assert bad.value.code == "INVALID_INPUT"
    none = ContainerEndpoints.from_config(AgentConfig(node_name="n", docker_host="", cri_sockets=()))
    with pytest.raises(ContainerError) as missing:
        await none.dispatch("GET", "/docker/ps")
    assert missing.value.code == "NO_RUNTIME_AVAILABLE"
