"""What a route module of the node API is given and uses: the node's context, and the request's body and query.

Adding endpoints: write a module ``daemon/nodeapi/<area>.py`` with::

    from aiohttp import web
    from .context import NodeContext, read_body, query_int
    from .envelope import NodeAPIError, ok

    def routes(node: NodeContext) -> list[web.RouteDef]:
        async def summary(request: web.Request) -> web.Response:
            return ok({"hostname": ...})            # {"status": "success", "data": ...}
        return [web.get("/system/summary", summary)]

and add its ``routes`` to ``ROUTES`` in ``server.py``. Paths mirror the
gateway's without ``/api/v1``. Raise ``NodeAPIError(status, code, message,
details)`` (or any other Refusal, such as ContainerError or AccountError) and
the client gets the contract's error envelope. ``node.config`` is the
AgentConfig, ``node.kube`` the agent's Kubernetes connection,
``node.app.on_cleanup`` takes teardown hooks. WebSocket routes are ordinary
aiohttp ones (``web.WebSocketResponse``); the same token check runs on the
upgrade. A dispatch-table module (``dispatch(method, path, query, body)``
answering ``(status, data)``) plugs in with :func:`dispatch_routes`.
Blocking work (psutil, PAM, useradd, the journal) goes through
``asyncio.to_thread``: the agent's loop also runs its heartbeat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from vapor.agentapi.errors import INVALID_INPUT
from vapor.kube import Kube

from .._config import AgentConfig
from ..host.hostroot import HostRoot
from .envelope import NodeAPIError, ok

M = TypeVar("M", bound=BaseModel)
CALLER = web.RequestKey("caller", str)  # who called (the TokenReview's username), for handlers that log it


@dataclass
class NodeContext:
    """What route modules get: the agent's settings, its Kubernetes connection and the aiohttp app."""

    config: AgentConfig
    kube: Kube | None
    app: web.Application
    extras: dict[str, Any] = field(default_factory=dict)  # shared per-server state, by module


RouteFactory = Callable[[NodeContext], Iterable[web.AbstractRouteDef]]


def host_root_of(node: NodeContext) -> HostRoot:
    """The node API's one HostRoot, made on first use; its worker ends with the API (aiohttp's on_cleanup).

    Call it where the routes are made: the app's cleanup signals are frozen once it serves.
    """
    root = node.extras.get("host_root")
    if not isinstance(root, HostRoot):
        made = root = node.extras["host_root"] = HostRoot(node.config.host_root)

        async def close(_app: web.Application) -> None:
            await made.close()

        node.app.on_cleanup.append(close)
    return root


def query_int(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    """A whole-number query parameter within ``[low, high]``; INVALID_INPUT otherwise."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise NodeAPIError(400, INVALID_INPUT, f"{name} must be a whole number (got {text[:40]!r})") from None
    if not low <= value <= high:
        raise NodeAPIError(400, INVALID_INPUT, f"{name} must be between {low} and {high} (got {value})")
    return value


def invalid_body(exc: ValidationError) -> str:
    """The sentence of an INVALID_INPUT about a body: the first bad field and what is wrong with it."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid body: {where}: {message}" if where else message


async def json_body(request: web.Request) -> Any:
    """The request's JSON body (None when empty); INVALID_INPUT when it is not JSON."""
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise NodeAPIError(400, INVALID_INPUT, "the request body is not valid JSON") from None


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated by ``model``; INVALID_INPUT naming the first bad field otherwise."""
    value = await json_body(request)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise NodeAPIError(400, INVALID_INPUT, invalid_body(exc)) from None


def dispatch_routes(
    prefixes: Iterable[str],
    dispatch: Callable[[str, str, Mapping[str, str], Any], Awaitable[tuple[int, Any]]],
) -> list[web.RouteDef]:
    """Routes that hand every method under each prefix to ``dispatch(method, path, query, body)``."""

    async def handler(request: web.Request) -> web.Response:
        body = await json_body(request) if request.can_read_body else None
        status, data = await dispatch(request.method, request.path, dict(request.query), body)
        return ok(data, status)

    out: list[web.RouteDef] = []
    for prefix in prefixes:
        prefix = "/" + prefix.strip("/")
        out.append(web.route("*", prefix, handler))
        out.append(web.route("*", prefix + "/{tail:.*}", handler))
    return out
