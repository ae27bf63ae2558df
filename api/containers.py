"""/api/v1/containers: a host's containers from whichever runtime it has (Docker, containerd or CRI-O).

Host-scoped (``?host=``, see _hostscope): the gateway asks the agent of that
host over its node-local API and answers in the contract's envelope. The agent
tries Docker first, then the CRI sockets; ``?runtime=`` picks one. No runtime
on the host is 503 NO_RUNTIME_AVAILABLE; an agent that cannot be reached is
the gateway's 502/503/504 AGENT_* (see _agents).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_response

from vapor.agentapi.errors import DOCKER_ERROR, NO_RUNTIME_AVAILABLE, RUNTIME_ERROR

from ._agentdocs import agent_failures, documents_failures
from ._agents import ask_agent
from ._guard import require
from ._hostscope import HOST_PARAMETER_HELP
from ._runtimes import container_ref
from ._schema import Failure, Success

blueprint = Blueprint("containers", __name__, url_prefix="/api/v1/containers")

Runtime = Literal["docker", "containerd", "cri-o"]
RUNTIME_HELP = "Runtime to ask (default: Docker when it answers, else the CRI runtime)."
MAX_TAIL = 10000

documents_runtime_errors = documents_failures(
    agent_failures("ContainersFailure", {502: (DOCKER_ERROR, RUNTIME_ERROR), 503: (NO_RUNTIME_AVAILABLE,)})
)


class ContainersQuery(BaseModel):
    """Which host, and optionally which runtime."""

    host: str | None = Field(default=None, description=HOST_PARAMETER_HELP)
    runtime: Runtime | None = Field(default=None, description=RUNTIME_HELP)


class LogsQuery(ContainersQuery):
    """Which host and runtime, and how much of the log."""

    tail: int = Field(default=1000, ge=1, le=MAX_TAIL, description="Lines from the end of the log.")
    timestamps: bool = Field(default=False, description="Start each line with the time it was written.")


class ContainerSummary(BaseModel):
    """A container as every runtime can describe it."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    image: str
    state: str = Field(description="CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED or CONTAINER_UNKNOWN.")
    created_at: str | None = Field(description="RFC 3339, UTC.")
    runtime: str = Field(description="docker, containerd or cri-o.")
    pod: str | None = Field(default=None, description="namespace/name of the pod (CRI containers made by a kubelet).")
    pod_sandbox_id: str | None = Field(default=None, description="CRI only.")


class ContainerList(BaseModel):
    """The containers of the runtime in use."""

    containers: list[ContainerSummary]
    count: int
    runtime: str


class ContainerDetail(ContainerSummary):
    """One container in detail (the fields a runtime cannot tell are null)."""

    image_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = Field(default=None, description="Docker only.")
    port_bindings: dict[str, list[dict[str, str]]] | None = Field(default=None, description="Docker only.")
    log_path: str | None = Field(default=None, description="CRI only: the file the runtime writes the log to.")


class ContainerLogs(BaseModel):
    """The end of a container's output (stdout and stderr)."""

    container_id: str
    logs: str
    runtime: str
    tail: int


def _params(query: ContainersQuery) -> dict[str, Any]:
    return query.model_dump(exclude={"host"}, exclude_none=True)


@blueprint.get("")
@require("viewer")
@tag(["containers"])
@validate_querystring(ContainersQuery)
@validate_response(Success[ContainerList])
@documents_runtime_errors
@document_response(Failure, 400)
async def list_containers(query_args: ContainersQuery) -> Success[ContainerList]:
    """Every container of the host, running or not, from its runtime (Docker, containerd or CRI-O)."""
    data = await ask_agent("GET", "/containers", params=_params(query_args), host=query_args.host)
    return Success[ContainerList](data=ContainerList.model_validate(data))


@blueprint.get("/<container_id>")
@require("viewer")
@tag(["containers"])
@validate_querystring(ContainersQuery)
@validate_response(Success[ContainerDetail])
@document_response(Failure, 404)
@documents_runtime_errors
@document_response(Failure, 400)
async def get_container(container_id: str, query_args: ContainersQuery) -> Success[ContainerDetail]:
    """One container, by id, unique id prefix or (Docker) name."""
    ref = container_ref(container_id)
    data = await ask_agent("GET", f"/containers/{ref}", params=_params(query_args), host=query_args.host)
    return Success[ContainerDetail](data=ContainerDetail.model_validate(data))


@blueprint.get("/<container_id>/logs")
@require("admin")
@tag(["containers"])
@validate_querystring(LogsQuery)
@validate_response(Success[ContainerLogs])
@document_response(Failure, 404)
@documents_runtime_errors
@document_response(Failure, 400)
async def container_logs(container_id: str, query_args: LogsQuery) -> Success[ContainerLogs]:
    """The last lines a container wrote to stdout and stderr (role admin: they may hold secrets)."""
    ref = container_ref(container_id)
    params = _params(query_args)
    params["timestamps"] = "true" if query_args.timestamps else "false"
    data = await ask_agent("GET", f"/containers/{ref}/logs", params=params, host=query_args.host)
    return Success[ContainerLogs](data=ContainerLogs.model_validate(data))
