"""The gateway's client for the agents' node-local APIs (see vapor.agent.nodeapi.server).

Use from a blueprint (host-scoped endpoints, ``?host=`` as in _hostscope)::

    from ._agents import ask_agent, agent_websocket, relay_websocket

    data = await ask_agent("GET", "/system/summary", host=query_args.host)          # the agent's ``data``
    data = await ask_agent("POST", "/users", host=None, json={...}, timeout=60)     # host=None: ?host= or default
    data = await ask_agent("GET", "/logs", host=h, params={"page": 2})              # None values are left out

    async with agent_websocket("/ws/logs", host=h, params={...}) as ws:              # aiohttp ClientWebSocketResponse
        await ws.send_str(...); async for message in ws: ...

    await relay_websocket("/ws/terminal", host=h)      # inside a Quart websocket route: pipe both ways until closed

The agent's own errors come back as the same APIError (status, code, message,
details): NOT_FOUND, DOCKER_ERROR, INVALID_INPUT and so on pass straight
through. Failures between gateway and agent are the gateway's:

- 503 AGENT_UNAVAILABLE: the Host publishes no ``status.agentEndpoint``
  (agent not running, or started with ``--api-bind ''``), or one without
  TLS (the gateway talks to agents over https only);
- 502 AGENT_UNREACHABLE: connection refused or reset, a TLS certificate
  that does not match the published fingerprint, an answer that is not the
  envelope;
- 502 AGENT_AUTH_FAILED: the agent refused the gateway's own token (a
  deployment problem, never the client's token);
- 504 AGENT_TIMEOUT: no answer within ``timeout`` (``VAPOR_AGENT_TIMEOUT``,
  30 s by default).

The gateway's identity: a token of the audience ``vapor-agent`` (see
_agenttoken). TLS: the agent's self-signed certificate is pinned by the
SHA-256 fingerprint the agent publishes in ``status.agentEndpoint.certSha256``.
What the OpenAPI document says of these failures is in _agentdocs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from quart import Quart, current_app, websocket

from vapor.agentapi import envelope
from vapor.agentapi.errors import (
    AGENT_AUTH_FAILED,
    AGENT_TIMEOUT,
    AGENT_UNAVAILABLE,
    AGENT_UNREACHABLE,
    NOT_FOUND,
    Refusal,
)
from vapor.kube import Kube
from vapor.model import Host, names

from ._agenttoken import GatewayToken
from ._errors import APIError
from ._hostscope import scoped_host
from ._state import gateway

log = logging.getLogger("vapor.gateway.agents")

DEFAULT_SERVICE_ACCOUNT = "vapor-system/vapor-gateway"
EXTENSION = "vapor.agents"


def _endpoint(host: Host) -> tuple[str, aiohttp.Fingerprint | bool]:
    """Base URL and TLS check (pinned fingerprint) of ``host``'s agent; AGENT_UNAVAILABLE when unpublished."""
    endpoint = host.status.agent_endpoint if host.status is not None else None
    if endpoint is None:
        raise APIError(
            503,
            AGENT_UNAVAILABLE,
            f"host {host.metadata.name!r} publishes no node API endpoint",
            "its agent is not running yet, or runs without --api-bind",
        )
    if not endpoint.url.startswith("https://"):
        # The gateway sends its token and users' passwords to agents: never in clear.
        raise APIError(
            503,
            AGENT_UNAVAILABLE,
            f"host {host.metadata.name!r} publishes a node API without TLS; the gateway calls agents over https only",
            "run its agent without --no-api-tls",
        )
    if not endpoint.cert_sha256:
        raise APIError(503, AGENT_UNAVAILABLE, f"host {host.metadata.name!r} publishes no certificate fingerprint")
    return endpoint.url, aiohttp.Fingerprint(bytes.fromhex(endpoint.cert_sha256))


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _unreachable(host: Host, exc: BaseException) -> APIError:
    name = host.metadata.name
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return APIError(
            502,
            AGENT_UNREACHABLE,
            f"the agent of host {name!r} presented a certificate other than the one it published",
        )
    return APIError(
        502, AGENT_UNREACHABLE, f"could not reach the agent of host {name!r}", str(exc) or type(exc).__name__
    )


def _check_node(host: Host, base: str, answered_as: str | None) -> None:
    """AGENT_UNREACHABLE unless the agent answered as ``host``'s node (a Host whose status points at another's)."""
    if answered_as != host.metadata.name:
        raise APIError(
            502,
            AGENT_UNREACHABLE,
            f"the node API at {base} answered as node {answered_as!r}, not as host {host.metadata.name!r}",
        )


class AgentClient:
    """One connection pool to every agent, with the gateway's token."""

    def __init__(self, kube: Kube, config: Mapping[str, Any]) -> None:
        self.token = GatewayToken(
            kube,
            config.get("AGENT_TOKEN_FILE") or None,
            str(config.get("AGENT_SERVICE_ACCOUNT") or DEFAULT_SERVICE_ACCOUNT),
        )
        self.timeout = float(config.get("AGENT_TIMEOUT") or 30.0)
        self.session = aiohttp.ClientSession(
            json_serialize=lambda v: orjson.dumps(v).decode(),
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=20),
        )

    async def close(self) -> None:
        """Close the pool."""
        await self.session.close()

    async def request(
        self,
        host: Host,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """``data`` of the agent's answer; APIError for every failure (see the module's docstring)."""
        for attempt in (1, 2):
            status, raw = await self._send(host, method, path, params=params, json=json, timeout=timeout)
            if status == 401 and attempt == 1:  # a rotated or revoked token: once more with a fresh one
                self.token.forget()
                continue
            return self._data(host, status, raw)
        raise AssertionError("unreachable")

    async def stream(
        self,
        host: Host,
        method: str,
        path: str,
        body: AsyncIterable[bytes],
        *,
        length: int | None = None,
        params: Mapping[str, Any] | None = None,
        idle_timeout: float | None = None,
    ) -> Any:
        """Send ``body`` to the agent chunk by chunk as it comes (never held whole); ``data`` of its answer.

        No time limit on the whole (a large upload takes what it takes): the
        agent must answer within ``idle_timeout`` once the body is sent. A body
        can be sent only once, so a refused token is not retried.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        wait = idle_timeout or self.timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=wait)
        status, raw = await self._send(host, method, path, params=params, data=body, headers=headers, timeout=timeout)
        if status == 401:
            self.token.forget()
        return self._data(host, status, raw)

    async def _send(
        self,
        host: Host,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> tuple[int, bytes]:
        """One request to ``host``'s agent as the gateway: its status and raw body (APIError when none came)."""
        base, tls = _endpoint(host)
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        sent = {**(headers or {}), "Authorization": f"Bearer {await self.token.get()}"}
        try:
            async with self.session.request(
                method, base + path, params=_query(params), json=json, data=data, headers=sent, ssl=tls, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
                answered_as = response.headers.get(names.AGENT_NODE_HEADER)
        except TimeoutError:
            waited = timeout.total or timeout.sock_read or 0
            raise APIError(
                504, AGENT_TIMEOUT, f"the agent of host {host.metadata.name!r} did not answer in {waited:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(host, exc) from None
        _check_node(host, base, answered_as)
        return status, raw

    @staticmethod
    def _data(host: Host, status: int, raw: bytes) -> Any:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        name = host.metadata.name
        try:
            return envelope.unwrap(status, body)
        except envelope.NotAnEnvelope:
            raise APIError(502, AGENT_UNREACHABLE, f"the agent of host {name!r} answered {status}") from None
        except Refusal as refused:
            if status in (401, 403):
                log.error("an agent refused the gateway's token", extra={"host": name, "error": refused.message})
                message = f"the agent of host {name!r} refused the gateway: {refused.message}"
                raise APIError(502, AGENT_AUTH_FAILED, message) from None
            raise APIError(refused.status, refused.code, refused.message, refused.details) from None

    @contextlib.asynccontextmanager
    async def websocket(
        self, host: Host, path: str, *, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket to ``path`` of ``host``'s agent, authenticated as the gateway."""
        base, tls = _endpoint(host)
        headers = {"Authorization": f"Bearer {await self.token.get()}"}
        try:
            ws = await self.session.ws_connect(
                base + path,
                params=_query(params),
                headers=headers,
                ssl=tls,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                heartbeat=30.0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                self.token.forget()
                raise APIError(
                    502, AGENT_AUTH_FAILED, f"the agent of host {host.metadata.name!r} refused the gateway"
                ) from None
            if exc.status == 404:
                raise APIError(404, NOT_FOUND, f"the agent of host {host.metadata.name!r} has no {path}") from None
            raise _unreachable(host, exc) from None
        except TimeoutError:
            raise APIError(504, AGENT_TIMEOUT, f"the agent of host {host.metadata.name!r} did not answer") from None
        except aiohttp.ClientError as exc:
            raise _unreachable(host, exc) from None
        try:
            # aiohttp keeps the upgrade's answer only in a private field: its headers name the node, as in _send.
            _check_node(host, base, ws._response.headers.get(names.AGENT_NODE_HEADER))
            yield ws
        finally:
            await ws.close()


def agents() -> AgentClient:
    """The app's AgentClient (made at first use)."""
    app = current_app
    found: AgentClient | None = app.extensions.get(EXTENSION)
    if found is None:
        state = gateway()
        found = app.extensions[EXTENSION] = AgentClient(state.kube, state.config)
    return found


def install(app: Quart) -> None:
    """Close the agents' connection pool when the app stops."""

    @app.after_serving
    async def close_agents() -> None:
        found: AgentClient | None = app.extensions.pop(EXTENSION, None)
        if found is not None:
            await found.close()


async def ask_agent(
    method: str,
    path: str,
    *,
    host: str | None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    timeout: float | None = None,
) -> Any:
    """``data`` of the answer of the scoped host's agent (``host``, else ``?host=``, else the default)."""
    return await agents().request(scoped_host(host), method, path, params=params, json=json, timeout=timeout)


@contextlib.asynccontextmanager
async def agent_websocket(
    path: str, *, host: Host, params: Mapping[str, Any] | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket to ``host``'s agent (see ``AgentClient.websocket``)."""
    async with agents().websocket(host, path, params=params) as ws:
        yield ws


async def relay_websocket(
    path: str,
    *,
    host: Host,
    params: Mapping[str, Any] | None = None,
    first: list[str] = [],  # noqa: B006
) -> int | None:
    """Pipe the current Quart websocket to the agent's ``path`` and back until either side closes.

    ``first``: text messages sent to the agent before relaying (e.g. the subscribe message the gateway read).
    Returns the agent's close code (None when the client went first).
    """
    async with agent_websocket(path, host=host, params=params) as upstream:
        for message in first:
            await upstream.send_str(message)
        return await pipe_websocket(upstream)


async def pipe_websocket(upstream: aiohttp.ClientWebSocketResponse) -> int | None:
    """Relay frames, text and binary, between the current Quart websocket and ``upstream`` until one side ends.

    Returns ``upstream``'s close code when the agent closed first, else None.
    """

    async def downstream_to_agent() -> None:
        while True:
            data = await websocket.receive()
            if isinstance(data, bytes):
                await upstream.send_bytes(data)
            else:
                await upstream.send_str(data)

    async def agent_to_downstream() -> int | None:
        async for message in upstream:
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                await websocket.send(message.data)
            else:
                break
        return upstream.close_code

    client = asyncio.create_task(downstream_to_agent())
    agent = asyncio.create_task(agent_to_downstream())
    try:
        await asyncio.wait([client, agent], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (client, agent):
            task.cancel()
        await asyncio.gather(client, agent, return_exceptions=True)
    return agent.result() if agent.done() and not agent.cancelled() and agent.exception() is None else None


__all__ = [
    "AgentClient",
    "agent_websocket",
    "agents",
    "ask_agent",
    "install",
    "pipe_websocket",
    "relay_websocket",
]
