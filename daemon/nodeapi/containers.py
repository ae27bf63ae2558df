"""The containers and Docker operations of the node-local API, as one dispatch table the agent's server calls.

Paths mirror the gateway's (without ``/api/v1``)::

    GET    /containers                      ?runtime=
    GET    /containers/{id}                 ?runtime=
    GET    /containers/{id}/logs            ?runtime= &tail= &timestamps=
    GET    /docker/ps
    POST   /docker/containers               CreateContainerRequest
    POST   /docker/containers/{id}/start
    POST   /docker/containers/{id}/stop     ?timeout=
    DELETE /docker/containers/{id}
    POST   /docker/images/pull              PullImageRequest

``dispatch`` answers ``(status, data)`` or raises ContainerError (with the
status and contract code the gateway passes on). Bodies are validated again
here: the agent trusts the gateway's token, not its checks. ``routes(node)``
plugs the table into the node-local API (daemon/nodeapi/server.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vapor.agentapi.dockerspec import CreateContainerRequest, PullImageRequest
from vapor.agentapi.errors import INVALID_INPUT, NO_RUNTIME_AVAILABLE, NOT_FOUND

from .._config import AgentConfig
from ..host.containers import ContainerError, Containers, Runtime, check_ref
from ..host.cri import CriRuntime
from ..host.docker import DockerRuntime
from .context import NodeContext, dispatch_routes, invalid_body

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def _int(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ContainerError(400, INVALID_INPUT, f"{name} must be a whole number (got {text[:40]!r})") from None


def _bool(query: Mapping[str, str], name: str) -> bool:
    text = str(query.get(name, "")).lower()
    if text not in TRUE | FALSE:
        raise ContainerError(400, INVALID_INPUT, f"{name} must be true or false (got {text[:40]!r})")
    return text in TRUE


def _body(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ContainerError(400, INVALID_INPUT, invalid_body(exc)) from None


class ContainerEndpoints:
    """The node's runtimes (from the agent's flags) and the operations on them."""

    def __init__(self, docker: DockerRuntime | None, cri: list[CriRuntime]) -> None:
        self.docker = docker
        runtimes: list[Runtime] = [docker] if docker is not None else []
        runtimes.extend(cri)
        self.containers = Containers(runtimes)

    @classmethod
    def from_config(cls, config: AgentConfig) -> ContainerEndpoints:
        """Docker at ``--docker-host`` (unless empty), then each ``--cri-socket``."""
        docker = DockerRuntime(config.docker_host) if config.docker_host else None
        return cls(docker, [CriRuntime(socket) for socket in config.cri_sockets if socket])

    def _docker(self) -> DockerRuntime:
        if self.docker is None:
            raise ContainerError(503, NO_RUNTIME_AVAILABLE, "this host's agent has no Docker daemon configured")
        return self.docker

    async def dispatch(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """Answer ``method path``: ``(HTTP status, data)``; ContainerError for a failure."""
        query = query or {}
        parts = [p for p in path.strip("/").split("/") if p]
        runtime = query.get("runtime") or None
        match method.upper(), parts:
            case "GET", ["containers"]:
                return 200, await self.containers.list(runtime)
            case "GET", ["containers", ref]:
                return 200, await self.containers.get(ref, runtime)
            case "GET", ["containers", ref, "logs"]:
                tail = _int(query, "tail")
                return 200, await self.containers.logs(ref, runtime, tail, _bool(query, "timestamps"))
            case "GET", ["docker", "ps"]:
                return 200, await self._docker().ps()
            case "POST", ["docker", "containers"]:
                request = _body(CreateContainerRequest, body)
                return 201, await self._docker().create(request)
            case "POST", ["docker", "containers", ref, "start"]:
                return 200, await self._docker().start(check_ref(ref))
            case "POST", ["docker", "containers", ref, "stop"]:
                timeout = _int(query, "timeout")
                return 200, await self._docker().stop(check_ref(ref), 10 if timeout is None else timeout)
            case "DELETE", ["docker", "containers", ref]:
                return 200, await self._docker().remove(check_ref(ref))
            case "POST", ["docker", "images", "pull"]:
                return 200, await self._docker().pull(_body(PullImageRequest, body))
        raise ContainerError(404, NOT_FOUND, f"no operation {method} {path}")


def routes(node: NodeContext) -> list[web.RouteDef]:
    """The node-local API's /containers and /docker routes, on the runtimes of the agent's flags."""
    endpoints = ContainerEndpoints.from_config(node.config)
    return dispatch_routes(["/containers", "/docker"], endpoints.dispatch)
