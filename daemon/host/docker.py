"""Docker through the Docker SDK: the runtime-neutral container views and the ``/docker/...`` operations.

The SDK is synchronous: every call runs in a worker thread (``asyncio.to_thread``),
so a slow daemon or a long pull never blocks the agent's event loop. The
connection is made on first use and made again after the daemon went away.

Failures: an unknown container is NOT_FOUND; anything the daemon refuses or
fails at is DOCKER_ERROR with the daemon's own explanation (removing a running
container, an image that is not there, a registry that does not answer);
a daemon that does not answer at all is NO_RUNTIME_AVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from vapor.agentapi.dockerspec import CreateContainerRequest, PullImageRequest
from vapor.agentapi.errors import DOCKER_ERROR, INVALID_INPUT, NO_RUNTIME_AVAILABLE, NOT_FOUND

from .containers import ContainerError, check_ref, iso

if TYPE_CHECKING:
    import docker  # type: ignore[import-untyped]

log = logging.getLogger("vapor.agent.docker")

T = TypeVar("T")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Docker's states in the CRI's words, so /containers reads the same whatever the runtime.
CRI_STATES = {
    "created": "CONTAINER_CREATED",
    "running": "CONTAINER_RUNNING",
    "paused": "CONTAINER_RUNNING",
    "restarting": "CONTAINER_RUNNING",
    "exited": "CONTAINER_EXITED",
    "dead": "CONTAINER_EXITED",
}
MAX_STOP_TIMEOUT = 300


def _sdk() -> Any:
    """The Docker SDK, loaded on first use: with requests it is megabytes an agent without Docker never needs."""
    import docker
    import docker.errors  # type: ignore[import-untyped]

    return docker


def _docker_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 with nanoseconds (``2025-07-25T09:38:51.123456789Z``); None for the zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, rest = text.partition(".")
    zone = rest.lstrip("0123456789") if rest else ""
    try:
        return datetime.fromisoformat(head + (zone if zone and zone != "Z" else "+00:00"))
    except ValueError:
        return None


def _daemon_message(error: docker.errors.APIError) -> str:
    explanation = error.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or error).strip()


def _ports(ports: list[dict[str, Any]] | None) -> list[str]:
    """``80/tcp->8080/tcp`` for a published port, ``80/tcp`` for one only exposed (as ``docker ps`` lists them)."""
    shown: list[str] = []
    for port in ports or []:
        kind = port.get("Type", "tcp")
        private = f"{port.get('PrivatePort')}/{kind}"
        public = port.get("PublicPort")
        text = f"{private}->{public}/{kind}" if public else private
        if text not in shown:
            shown.append(text)
    return shown


def _bindings(host_config: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The port bindings a container was created with, in the request's shape."""
    out: dict[str, list[dict[str, str]]] = {}
    for key, bindings in (host_config.get("PortBindings") or {}).items():
        out[key] = [
            {"hostPort": b.get("HostPort", ""), **({"hostIp": b["HostIp"]} if b.get("HostIp") else {})}
            for b in bindings or []
        ]
    return out


class DockerRuntime:
    """One Docker daemon (``base_url``: ``unix:///var/run/docker.sock``, ``tcp://host:2375``, ...)."""

    name = "docker"

    def __init__(self, base_url: str = DEFAULT_DOCKER_HOST, timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self) -> docker.APIClient:
        with self._lock:
            if self._client is None:
                # version=None asks the daemon which API version it speaks (one round trip).
                self._client = _sdk().APIClient(base_url=self.base_url, version=None, timeout=self.timeout)
            return self._client

    def _forget(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _call(self, what: str, work: Callable[[docker.APIClient], T], ref: str | None = None) -> T:
        """Run ``work(client)`` in a thread; turn the SDK's failures into ContainerErrors."""
        import requests.exceptions

        sdk = _sdk()

        def run() -> T:
            try:
                client = self._connect()
            except sdk.errors.DockerException as exc:
                raise ContainerError(
                    503, NO_RUNTIME_AVAILABLE, f"the Docker daemon at {self.base_url} does not answer", str(exc)
                ) from exc
            try:
                return work(client)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                self._forget()
                raise ContainerError(
                    503, NO_RUNTIME_AVAILABLE, f"the Docker daemon at {self.base_url} does not answer", str(exc)
                ) from exc

        try:
            return await asyncio.to_thread(run)
        except sdk.errors.NotFound as exc:
            if ref is not None and "container" in _daemon_message(exc).lower():
                raise ContainerError(404, NOT_FOUND, f"no container {ref!r}", _daemon_message(exc)) from exc
            raise ContainerError(404, DOCKER_ERROR, _daemon_message(exc)) from exc
        except sdk.errors.APIError as exc:
            status = exc.status_code or 500
            log.warning("the Docker daemon refused", extra={"operation": what, "status": status, "error": str(exc)})
            raise ContainerError(
                status if status in (400, 409) else 502, DOCKER_ERROR, _daemon_message(exc), f"{what}: {status}"
            ) from exc
        except sdk.errors.DockerException as exc:
            raise ContainerError(502, DOCKER_ERROR, str(exc), what) from exc

    async def probe(self) -> str | None:
        """None when the daemon answers a ping, else why not."""
        try:
            await self._call("ping", lambda c: c.ping())
        except ContainerError as exc:
            return exc.details or exc.message
        return None

    # -- runtime-neutral views ----------------------------------------------------------------------

    async def list_containers(self) -> list[dict[str, Any]]:
        """Every container (running or not), in the /containers shape."""
        items = await self._call("list containers", lambda c: c.containers(all=True))
        return [
            {
                "id": item["Id"],
                "name": (item.get("Names") or ["/"])[0].lstrip("/"),
                "image": item.get("Image", ""),
                "state": CRI_STATES.get(str(item.get("State", "")), "CONTAINER_UNKNOWN"),
                "created_at": iso(datetime.fromtimestamp(int(item.get("Created", 0)), UTC)),
                "runtime": self.name,
            }
            for item in items
        ]

    async def inspect(self, ref: str) -> dict[str, Any]:
        """The daemon's inspect document of a container."""
        check_ref(ref)
        return await self._call("inspect container", lambda c: c.inspect_container(ref), ref)

    async def container(self, ref: str) -> dict[str, Any]:
        """One container in detail (no environment: it may hold secrets)."""
        raw = await self.inspect(ref)
        state = raw.get("State") or {}
        config = raw.get("Config") or {}
        host_config = raw.get("HostConfig") or {}
        finished = _docker_time(state.get("FinishedAt"))
        return {
            "id": raw["Id"],
            "name": str(raw.get("Name", "")).lstrip("/"),
            "image": config.get("Image", ""),
            "image_id": raw.get("Image", ""),
            "state": CRI_STATES.get(str(state.get("Status", "")), "CONTAINER_UNKNOWN"),
            "status": state.get("Status", ""),
            "created_at": iso(_docker_time(raw.get("Created"))),
            "started_at": iso(_docker_time(state.get("StartedAt"))),
            "finished_at": iso(finished),
            "exit_code": state.get("ExitCode") if finished else None,
            "pid": state.get("Pid") or None,
            "command": [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])],
            "labels": config.get("Labels") or {},
            "port_bindings": _bindings(host_config),
            "restart_count": raw.get("RestartCount", 0),
            "error": state.get("Error") or None,
            "runtime": self.name,
        }

    async def logs(self, ref: str, tail: int, timestamps: bool) -> str:
        """The last ``tail`` lines of stdout and stderr."""
        check_ref(ref)
        data = await self._call(
            "container logs", lambda c: c.logs(ref, stdout=True, stderr=True, tail=tail, timestamps=timestamps), ref
        )
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    # -- /docker/... --------------------------------------------------------------------------------

    async def ps(self) -> dict[str, Any]:
        """Every container as ``docker ps -a`` lists it: ``{containers, count}``."""
        items = await self._call("list containers", lambda c: c.containers(all=True))
        containers = [
            {
                "id": item["Id"][:12],
                "full_id": item["Id"],
                "names": item.get("Names") or [],
                "image": item.get("Image", ""),
                "command": item.get("Command", ""),
                "created": int(item.get("Created", 0)),
                "state": item.get("State", ""),
                "status": item.get("Status", ""),
                "ports": _ports(item.get("Ports")),
            }
            for item in items
        ]
        return {"containers": containers, "count": len(containers)}

    async def create(self, request: CreateContainerRequest) -> dict[str, Any]:
        """Create (not start) a container; ``{id, name, warnings}``."""

        def work(client: docker.APIClient) -> dict[str, Any]:
            host_config = client.create_host_config(port_bindings=request.host_ports() or None)
            created = client.create_container(
                request.image,
                name=request.name.lstrip("/") if request.name else None,
                environment=request.env or None,
                ports=list(request.portBindings) or None,
                host_config=host_config,
            )
            return dict(created)

        created = await self._call("create container", work)
        detail = await self.container(created["Id"])
        log.info("container created", extra={"container": created["Id"], "image": request.image})
        return {
            "id": created["Id"],
            "name": detail["name"],
            "image": request.image,
            "state": detail["status"],
            "warnings": created.get("Warnings") or [],
        }

    async def start(self, ref: str) -> dict[str, Any]:
        """Start a container (a running one stays as it is)."""
        check_ref(ref)
        await self._call("start container", lambda c: c.start(ref), ref)
        return await self._outcome(ref, "started")

    async def stop(self, ref: str, timeout: int = 10) -> dict[str, Any]:
        """Stop a container: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        check_ref(ref)
        if not 0 <= timeout <= MAX_STOP_TIMEOUT:
            raise ContainerError(400, INVALID_INPUT, f"timeout must be 0 to {MAX_STOP_TIMEOUT} seconds")
        await self._call("stop container", lambda c: c.stop(ref, timeout=timeout), ref)
        return await self._outcome(ref, "stopped")

    async def remove(self, ref: str) -> dict[str, Any]:
        """Remove a stopped container; the daemon refuses a running one (DOCKER_ERROR 409)."""
        detail = await self.container(ref)
        # No force: the daemon itself refuses a running container, so there is no race with a start.
        await self._call("remove container", lambda c: c.remove_container(detail["id"], v=False, force=False), ref)
        log.info("container removed", extra={"container": detail["id"]})
        return {"id": detail["id"], "name": detail["name"], "removed": True, "message": f"container {ref} removed"}

    async def _outcome(self, ref: str, done: str) -> dict[str, Any]:
        detail = await self.container(ref)
        log.info(f"container {done}", extra={"container": detail["id"], "state": detail["status"]})
        return {
            "id": detail["id"],
            "name": detail["name"],
            "state": detail["status"],
            "message": f"container {ref} {done}",
        }

    async def pull(self, request: PullImageRequest) -> dict[str, Any]:
        """Pull ``imageName:tag``; ``{image, id, digest, status}``. The daemon's progress goes to the log."""
        reference = f"{request.imageName}:{request.tag}"

        def work(client: docker.APIClient) -> dict[str, Any]:
            digest = None
            last = ""
            for event in client.pull(request.imageName, tag=request.tag, stream=True, decode=True):
                if "error" in event:  # a failure after the pull began arrives in the stream, not as a status
                    detail = event.get("errorDetail") or {}
                    raise _sdk().errors.APIError(
                        str(event["error"]), explanation=str(detail.get("message") or event["error"])
                    )
                status = str(event.get("status", ""))
                if status.startswith("Digest:"):
                    digest = status.split(":", 1)[1].strip()
                if status and status != last and "id" not in event:
                    log.info("pulling", extra={"image": reference, "progress": status})
                    last = status
            image = client.inspect_image(reference)
            return {"image": reference, "id": image["Id"], "digest": digest, "status": last}

        result = await self._call("pull image", work)
        log.info("image pulled", extra={"image": reference, "id": result["id"]})
        return result
