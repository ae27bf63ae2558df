"""The node's containers, from whichever runtime it has: Docker first, then a CRI runtime (containerd, CRI-O).

::

    ContainerError(status, code, message, details)   every failure a client should see
      NO_RUNTIME_AVAILABLE (503)   no runtime answers on this node
      NOT_FOUND (404)              no such container
      INVALID_INPUT (400)          a bad id, runtime name or request body
      DOCKER_ERROR                 the Docker daemon refused or failed (its message in ``message``)
      RUNTIME_ERROR (502)          a CRI runtime failed

``Containers`` answers the runtime-neutral endpoints (``/containers``,
``/containers/{id}``, ``/containers/{id}/logs``) with plain JSON-ready dicts in
the contract's shapes; ``state`` uses the CRI names (CONTAINER_RUNNING, ...)
whatever the runtime.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from vapor.agentapi.dockerspec import CONTAINER_REF_PATTERN
from vapor.agentapi.errors import INVALID_INPUT, NO_RUNTIME_AVAILABLE, Refusal

log = logging.getLogger("vapor.agent.containers")


RUNTIMES = ("docker", "containerd", "cri-o")
# What a container id (or name, or id prefix) in a URL may look like.
CONTAINER_REF_RE = re.compile(CONTAINER_REF_PATTERN)
DEFAULT_TAIL = 1000
MAX_TAIL = 10000


class ContainerError(Refusal):
    """A container runtime refusal or failure."""


def check_ref(ref: str) -> str:
    """``ref`` if it can name a container (id, id prefix or name); INVALID_INPUT otherwise."""
    if not CONTAINER_REF_RE.match(ref):
        raise ContainerError(
            400,
            INVALID_INPUT,
            f"{ref[:80]!r} is not a container id or name (letters, digits, _ . -, at most 128, no leading - or .)",
        )
    return ref


def check_tail(tail: int | None) -> int:
    """Lines of log to return: ``tail`` when in 1..MAX_TAIL, the default when None."""
    if tail is None:
        return DEFAULT_TAIL
    if isinstance(tail, bool) or not isinstance(tail, int) or not 1 <= tail <= MAX_TAIL:
        raise ContainerError(400, INVALID_INPUT, f"tail must be a whole number from 1 to {MAX_TAIL}")
    return tail


def iso(when: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second (``2025-07-25T09:38:51Z``), as the contract writes times."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_nanoseconds(value: int) -> datetime | None:
    """A CRI timestamp (nanoseconds since the epoch; 0: not set)."""
    return datetime.fromtimestamp(value / 1e9, UTC) if value > 0 else None


class Runtime(Protocol):
    """What the runtime-neutral endpoints need of a container runtime."""

    name: str

    async def probe(self) -> str | None:
        """None when the runtime answers, else why not."""

    async def list_containers(self) -> list[dict[str, Any]]:
        """Every container, in the list shape."""

    async def container(self, ref: str) -> dict[str, Any]:
        """One container in detail; NOT_FOUND when there is none."""

    async def logs(self, ref: str, tail: int, timestamps: bool) -> str:
        """The last ``tail`` lines of a container's output."""


@dataclass
class Containers:
    """The runtimes this node may have, in order of preference, and the runtime-neutral answers."""

    runtimes: list[Runtime] = field(default_factory=list)

    async def pick(self, wanted: str | None = None) -> Runtime:
        """The first runtime that answers (or the one named ``wanted``); NO_RUNTIME_AVAILABLE otherwise."""
        if wanted is not None and wanted not in RUNTIMES:
            raise ContainerError(400, INVALID_INPUT, f"runtime must be one of {', '.join(RUNTIMES)} (got {wanted!r})")
        tried: list[str] = []
        for runtime in self.runtimes:
            if wanted is not None and runtime.name != wanted:
                continue
            why = await runtime.probe()
            if why is None:
                return runtime
            tried.append(f"{runtime.name}: {why}")
        what = f"no {wanted} runtime answers on this host" if wanted else "no container runtime answers on this host"
        details = "; ".join(tried) if tried else "none is configured (see the agent's --docker-host and --cri-socket)"
        raise ContainerError(503, NO_RUNTIME_AVAILABLE, what, details)

    async def list(self, wanted: str | None = None) -> dict[str, Any]:
        """``{containers, count, runtime}`` of the runtime in use."""
        runtime = await self.pick(wanted)
        items = await runtime.list_containers()
        return {"containers": items, "count": len(items), "runtime": runtime.name}

    async def get(self, ref: str, wanted: str | None = None) -> dict[str, Any]:
        """One container in detail."""
        check_ref(ref)
        runtime = await self.pick(wanted)
        return await runtime.container(ref)

    async def logs(
        self, ref: str, wanted: str | None = None, tail: int | None = None, timestamps: bool = False
    ) -> dict[str, Any]:
        """``{container_id, logs, runtime}``: the end of a container's output."""
        check_ref(ref)
        lines = check_tail(tail)
        runtime = await self.pick(wanted)
        detail = await runtime.container(ref)
        text = await runtime.logs(detail["id"], lines, timestamps)
        return {"container_id": detail["id"], "logs": text, "runtime": runtime.name, "tail": lines}
