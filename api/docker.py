"""/api/v1/docker: a host's Docker engine: list, create, start, stop, remove containers and pull images.

Host-scoped (``?host=``). Bodies are checked strictly here and again by the
agent (names, image references, NAME=value environment entries, port
bindings): bad input is INVALID_INPUT before the Docker daemon is asked.
What the daemon refuses or fails at is DOCKER_ERROR with its own message
(removing a running container is refused: stop it first); an unknown
container is NOT_FOUND; a host without a Docker daemon is NO_RUNTIME_AVAILABLE.
Reads need a login; changes need role admin.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.dockerspec import CreateContainerRequest, PullImageRequest
from vapor.agentapi.errors import DOCKER_ERROR, NO_RUNTIME_AVAILABLE

from ._agentdocs import agent_failures, documents_failures
from ._agents import ask_agent
from ._bodyless import NoBody, optional_body
from ._guard import require
from ._hostscope import HostQuery
from ._runtimes import container_ref
from ._schema import Failure, Success

blueprint = Blueprint("docker", __name__, url_prefix="/api/v1/docker")

PULL_TIMEOUT = 900.0  # seconds a pull may take (a large image from a slow registry)
documents_docker_errors = documents_failures(
    agent_failures("DockerFailure", {502: (DOCKER_ERROR,), 503: (NO_RUNTIME_AVAILABLE,)})
)


class StopQuery(HostQuery):
    """Which host, and how long the container may take to stop."""

    timeout: int = Field(default=10, ge=0, le=300, description="Seconds between SIGTERM and SIGKILL.")


class DockerContainer(BaseModel):
    """A container as ``docker ps -a`` lists it."""

    id: str = Field(description="Short id (12 characters), as docker ps shows it.")
    full_id: str
    names: list[str] = Field(examples=[["/nginx"]])
    image: str
    command: str
    created: int = Field(description="Unix time of creation.")
    state: str = Field(description="created, running, paused, restarting, exited, dead.")
    status: str = Field(examples=["Up 2 hours"])
    ports: list[str] = Field(examples=[["80/tcp->8080/tcp"]])


class DockerContainers(BaseModel):
    """Every Docker container of the host."""

    containers: list[DockerContainer]
    count: int


class CreatedContainer(BaseModel):
    """A container made (not started)."""

    id: str
    name: str
    image: str
    state: str
    warnings: list[str]


class ContainerOutcome(BaseModel):
    """A container after a start or a stop."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    state: str = Field(description="Docker's state after the operation: running, exited, ...")
    message: str


class RemovedContainer(BaseModel):
    """A container removed."""

    id: str
    name: str
    removed: bool
    message: str


class PulledImage(BaseModel):
    """An image pulled onto the host."""

    image: str = Field(description="name:tag")
    id: str = Field(description="Image id (sha256:...).")
    digest: str | None = Field(description="Manifest digest the registry served.")
    status: str = Field(description="The daemon's last word on the pull.")


@blueprint.get("/ps")
@require("viewer")
@tag(["docker"])
@validate_querystring(HostQuery)
@validate_response(Success[DockerContainers])
@documents_docker_errors
@document_response(Failure, 400)
async def ps(query_args: HostQuery) -> Success[DockerContainers]:
    """Every Docker container, running or not (docker ps -a)."""
    data = await ask_agent("GET", "/docker/ps", host=query_args.host)
    return Success[DockerContainers](data=DockerContainers.model_validate(data))


@blueprint.post("/containers")
@require("admin")
@tag(["docker"])
@validate_querystring(HostQuery)
@validate_request(CreateContainerRequest)
@validate_response(Success[CreatedContainer], 201)
@document_response(Failure, 400)
@document_response(Failure, 409)
@documents_docker_errors
@document_response(Failure, 404)
async def create_container(
    data: CreateContainerRequest, query_args: HostQuery
) -> tuple[Success[CreatedContainer], int]:
    """Create a container from an image on the host (pull it first); it is not started."""
    body = data.model_dump(mode="json", exclude_none=True)
    made = await ask_agent("POST", "/docker/containers", json=body, host=query_args.host)
    return Success[CreatedContainer](data=CreatedContainer.model_validate(made)), 201


@blueprint.post("/containers/<container_id>/start")
@require("admin")
@tag(["docker"])
@validate_querystring(HostQuery)
@optional_body(NoBody)
@validate_response(Success[ContainerOutcome])
@document_response(Failure, 404)
@documents_docker_errors
@document_response(Failure, 400)
@document_response(Failure, 409)
async def start_container(container_id: str, data: NoBody, query_args: HostQuery) -> Success[ContainerOutcome]:
    """Start a stopped container (a running one is left as it is)."""
    ref = container_ref(container_id)
    data = await ask_agent("POST", f"/docker/containers/{ref}/start", host=query_args.host)
    return Success[ContainerOutcome](data=ContainerOutcome.model_validate(data))


@blueprint.post("/containers/<container_id>/stop")
@require("admin")
@tag(["docker"])
@validate_querystring(StopQuery)
@optional_body(NoBody)
@validate_response(Success[ContainerOutcome])
@document_response(Failure, 404)
@documents_docker_errors
@document_response(Failure, 400)
@document_response(Failure, 409)
async def stop_container(container_id: str, data: NoBody, query_args: StopQuery) -> Success[ContainerOutcome]:
    """Stop a running container: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    ref = container_ref(container_id)
    params = {"timeout": query_args.timeout}
    wait = query_args.timeout + 30.0  # the daemon may take the whole grace period
    data = await ask_agent("POST", f"/docker/containers/{ref}/stop", params=params, host=query_args.host, timeout=wait)
    return Success[ContainerOutcome](data=ContainerOutcome.model_validate(data))


@blueprint.delete("/containers/<container_id>")
@require("admin")
@tag(["docker"])
@validate_querystring(HostQuery)
@validate_response(Success[RemovedContainer])
@document_response(Failure, 404)
@document_response(Failure, 409)
@documents_docker_errors
@document_response(Failure, 400)
async def remove_container(container_id: str, query_args: HostQuery) -> Success[RemovedContainer]:
    """Remove a stopped container; a running one is refused (409 DOCKER_ERROR): stop it first."""
    ref = container_ref(container_id)
    data = await ask_agent("DELETE", f"/docker/containers/{ref}", host=query_args.host)
    return Success[RemovedContainer](data=RemovedContainer.model_validate(data))


@blueprint.post("/images/pull")
@require("admin")
@tag(["docker"])
@validate_querystring(HostQuery)
@validate_request(PullImageRequest)
@validate_response(Success[PulledImage])
@document_response(Failure, 400)
@documents_docker_errors
@document_response(Failure, 404)
@document_response(Failure, 409)
async def pull_image(data: PullImageRequest, query_args: HostQuery) -> Success[PulledImage]:
    """Pull imageName:tag from its registry (Docker Hub when the name has no registry)."""
    body = data.model_dump(mode="json")
    pulled = await ask_agent("POST", "/docker/images/pull", json=body, host=query_args.host, timeout=PULL_TIMEOUT)
    return Success[PulledImage](data=PulledImage.model_validate(pulled))
