"""containerd and CRI-O through the CRI socket: the runtime-neutral container views.

The CRI has no call that returns a container's output: the runtime writes it
to the file named by ``ContainerStatus.log_path``, one line per record in the
CRI log format (``<RFC 3339 time> <stream> <P|F> <text>``; ``P`` marks a
partial line continued by the next record), and the kubelet reads that file.
So does the agent, in a worker thread.

A socket that is missing, does not answer, or answers without the CRI (the
containerd that a Docker engine runs has its CRI plugin off) is not a runtime
of this host; ``probe()`` says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from vapor.agentapi.errors import NOT_FOUND, RUNTIME_ERROR

from .containers import ContainerError, from_nanoseconds, iso

log = logging.getLogger("vapor.agent.cri")

DEFAULT_CRI_SOCKETS = ("/run/containerd/containerd.sock", "/run/crio/crio.sock")
STATES = ("CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED", "CONTAINER_UNKNOWN")
MAX_LOG_READ = 8 * 2**20  # bytes read from the end of a log file, at most
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"


def _rpc() -> tuple[Any, Any]:
    """The grpc module and the CRI call, loaded on first use (9 MiB an agent never asked about containers needs)."""
    import grpc  # type: ignore[import-untyped]

    from .cri_proto import call

    return grpc, call


def _runtime_name(reported: str) -> str:
    name = reported.lower()
    return "cri-o" if "cri-o" in name or "crio" in name else "containerd" if "containerd" in name else name


def _state(value: int) -> str:
    return STATES[value] if 0 <= value < len(STATES) else "CONTAINER_UNKNOWN"


def parse_cri_log(data: bytes, timestamps: bool) -> list[str]:
    """The lines of a CRI log: partial records joined, the time kept when ``timestamps``."""
    lines: list[str] = []
    pending = ""
    for raw in data.decode(errors="replace").splitlines():
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            continue
        when, _stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else ""
        if tag == "P":
            pending += text
            continue
        text = pending + text
        pending = ""
        lines.append(f"{when} {text}" if timestamps else text)
    if pending:
        lines.append(pending)
    return lines


def read_log_tail(path: str, tail: int, timestamps: bool) -> str:
    """The last ``tail`` lines of the CRI log at ``path`` ("" when there is none yet)."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - MAX_LOG_READ))
            data = file.read()
    except FileNotFoundError:
        return ""
    if len(data) == MAX_LOG_READ:  # started mid-line: drop the piece
        data = data.split(b"\n", 1)[-1]
    lines = parse_cri_log(data, timestamps)[-tail:]
    return "".join(line + "\n" for line in lines)


class CriRuntime:
    """A CRI runtime at a unix socket; its name (containerd, cri-o) is what its Version call reports."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.name = "containerd" if "containerd" in socket else "cri-o" if "crio" in socket else "cri"

    async def _call(self, method: str, request: dict[str, Any], ref: str | None = None) -> Any:
        grpc, call = _rpc()
        try:
            return await call(self.socket, method, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and ref is not None:
                raise ContainerError(404, NOT_FOUND, f"no container {ref!r}", exc.details()) from exc
            log.warning("the CRI runtime failed", extra={"socket": self.socket, "method": method, "error": str(exc)})
            raise ContainerError(
                502, RUNTIME_ERROR, f"{self.name}: {exc.details()}", f"{method}: {exc.code().name}"
            ) from exc

    async def probe(self) -> str | None:
        """None when a CRI runtime answers at the socket (and ``name`` is set from it), else why not."""
        if not Path(self.socket).is_socket():
            return f"no socket at {self.socket}"
        grpc, call = _rpc()
        try:
            version = await call(self.socket, "Version", {"version": "v1"}, timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return f"{self.socket} answers without the CRI (runtime.v1); its CRI plugin may be off"
            return f"{self.socket}: {exc.code().name}: {exc.details()}"
        self.name = _runtime_name(version.runtime_name)
        return None

    async def list_containers(self) -> list[dict[str, Any]]:
        """Every CRI container, in the /containers shape (with its pod when the kubelet made it)."""
        answer = await self._call("ListContainers", {})
        out: list[dict[str, Any]] = []
        for item in answer.containers:
            entry: dict[str, Any] = {
                "id": item.id,
                "name": item.metadata.name,
                "image": item.image.image,
                "state": _state(item.state),
                "created_at": iso(from_nanoseconds(item.created_at)),
                "runtime": self.name,
                "pod_sandbox_id": item.pod_sandbox_id,
            }
            if POD_NAME in item.labels:
                entry["pod"] = f"{item.labels.get(POD_NAMESPACE, '')}/{item.labels[POD_NAME]}"
            out.append(entry)
        return out

    async def container(self, ref: str) -> dict[str, Any]:
        """One container in detail (containerd accepts a unique id prefix)."""
        answer = await self._call("ContainerStatus", {"container_id": ref}, ref)
        status = answer.status
        finished = from_nanoseconds(status.finished_at)
        return {
            "id": status.id,
            "name": status.metadata.name,
            "image": status.image.image,
            "image_id": status.image_ref,
            "state": _state(status.state),
            "created_at": iso(from_nanoseconds(status.created_at)),
            "started_at": iso(from_nanoseconds(status.started_at)),
            "finished_at": iso(finished),
            "exit_code": status.exit_code if finished else None,
            "reason": status.reason or None,
            "message": status.message or None,
            "labels": dict(status.labels),
            "log_path": status.log_path or None,
            "runtime": self.name,
        }

    async def logs(self, ref: str, tail: int, timestamps: bool) -> str:
        """The last ``tail`` lines of the container's log file."""
        detail = await self.container(ref)
        if not detail["log_path"]:
            return ""
        return await asyncio.to_thread(read_log_tail, detail["log_path"], tail, timestamps)
