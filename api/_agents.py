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

The gateway's identity: a token of the audience ``vapor-agent``, which the
API server itself refuses (an agent cannot replay it against the Kubernetes
API): the file ``VAPOR_AGENT_TOKEN_FILE`` (the chart projects one into the
pod, re-read as the kubelet rotates it), else (dev, tests) a token the gateway
asks for through the TokenRequest API for ``VAPOR_AGENT_SERVICE_ACCOUNT``
(``vapor-system/vapor-gateway``). TLS: the
agent's self-signed certificate is pinned by the SHA-256 fingerprint the
agent publishes in ``status.agentEndpoint.certSha256``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import orjson
from kubernetes.aio import client
from pydantic import BaseModel, Field, create_model
from quart import Quart, current_app, websocket
from quart_schema import document_response

from vapor.kube import Conflict, Kube, KubeError, NotFound
from vapor.kube._client import call
from vapor.model import Host, names

from ._errors import AUTH_UNAVAILABLE, APIError
from ._hostscope import HOST_PARAMETER_HELP, scoped_host
from ._schema import ErrorBody, Failure
from ._state import gateway

log = logging.getLogger("vapor.gateway.agents")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

AGENT_UNAVAILABLE = "AGENT_UNAVAILABLE"
AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
AGENT_AUTH_FAILED = "AGENT_AUTH_FAILED"
AGENT_TIMEOUT = "AGENT_TIMEOUT"

DEFAULT_SERVICE_ACCOUNT = "vapor-system/vapor-gateway"
TOKEN_REQUEST_SECONDS = 3600
TOKEN_FILE_REREAD = 60.0  # kubelet rotates projected tokens well before they expire
EXTENSION = "vapor.agents"


class GatewayToken:
    """The gateway's bearer token for agents: a token file, or one from the TokenRequest API."""

    def __init__(self, kube: Kube, token_file: str | None, service_account: str) -> None:
        self.kube = kube
        self.path = Path(token_file) if token_file else None
        namespace, _, name = service_account.partition("/")
        if not namespace or not name:
            raise ValueError(f"AGENT_SERVICE_ACCOUNT must read namespace/name, got {service_account!r}")
        self.namespace, self.name = namespace, name
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A token valid for a while yet."""
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if not self._token or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                self._renew_at = time.monotonic() + lifetime
        return self._token

    def forget(self) -> None:
        """Drop the cached token (the agent refused it)."""
        self._token, self._renew_at = "", 0.0

    async def _fetch(self) -> tuple[str, float]:
        if self.path is not None:
            text = await asyncio.to_thread(self.path.read_text)
            return text.strip(), TOKEN_FILE_REREAD
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[names.AGENT_AUDIENCE], expiration_seconds=TOKEN_REQUEST_SECONDS)
        )
        request = self.kube.core.create_namespaced_service_account_token
        try:
            try:
                answer = await call(request(self.name, self.namespace, body))
            except NotFound:  # dev stack: nothing installed the ServiceAccount yet; the dev gateway may make it
                account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=self.name))
                with contextlib.suppress(Conflict):
                    await call(self.kube.core.create_namespaced_service_account(self.namespace, account))
                answer = await call(request(self.name, self.namespace, body))
        except KubeError as exc:
            raise APIError(
                502, AGENT_AUTH_FAILED, "the gateway could not get its token for the agents", exc.message
            ) from None
        log.info("got a token for the agents", extra={"service_account": f"{self.namespace}/{self.name}"})
        if answer.status is None or not answer.status.token:
            raise APIError(502, AGENT_AUTH_FAILED, "the Kubernetes API gave the gateway no token for the agents")
        return str(answer.status.token), TOKEN_REQUEST_SECONDS * 0.8


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
        base, tls = _endpoint(host)
        wait = timeout or self.timeout
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self.token.get()}"}
            try:
                async with self.session.request(
                    method,
                    base + path,
                    params=_query(params),
                    json=json,
                    headers=headers,
                    ssl=tls,
                    timeout=aiohttp.ClientTimeout(total=wait),
                ) as response:
                    raw = await response.read()
                    status = response.status
            except TimeoutError:
                raise APIError(
                    504, AGENT_TIMEOUT, f"the agent of host {host.metadata.name!r} did not answer in {wait:g} s"
                ) from None
            except aiohttp.ClientError as exc:
                raise _unreachable(host, exc) from None
            if status == 401 and attempt == 1:  # a rotated or revoked token: once more with a fresh one
                self.token.forget()
                continue
            return self._data(host, status, raw)
        raise AssertionError("unreachable")

    @staticmethod
    def _data(host: Host, status: int, raw: bytes) -> Any:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise APIError(502, AGENT_UNREACHABLE, f"the agent of host {host.metadata.name!r} answered {status}")
        if body["status"] == "success":
            return body.get("data")
        error = body.get("error") or {}
        code = str(error.get("code") or "AGENT_ERROR")
        message = str(error.get("message") or "the agent refused the request")
        if status in (401, 403):
            log.error("an agent refused the gateway's token", extra={"host": host.metadata.name, "error": message})
            raise APIError(
                502, AGENT_AUTH_FAILED, f"the agent of host {host.metadata.name!r} refused the gateway: {message}"
            )
        return_details = error.get("details")
        raise APIError(status, code, message, str(return_details) if return_details is not None else None)

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
                raise APIError(404, "NOT_FOUND", f"the agent of host {host.metadata.name!r} has no {path}") from None
            raise _unreachable(host, exc) from None
        except TimeoutError:
            raise APIError(504, AGENT_TIMEOUT, f"the agent of host {host.metadata.name!r} did not answer") from None
        except aiohttp.ClientError as exc:
            raise _unreachable(host, exc) from None
        try:
            yield ws
        finally:
            await ws.close()


class HostQuery(BaseModel):
    """Which host (the query string of a host-scoped endpoint without other parameters)."""

    host: str | None = Field(default=None, description=HOST_PARAMETER_HELP)


# The codes of the 502, 503 and 504 answers of every endpoint that asks an agent: the gateway's own, and
# AUTH_UNAVAILABLE, the agent's 503 when the Kubernetes API cannot review the gateway's token.
AGENT_FAILURE_CODES: dict[int, tuple[str, ...]] = {
    502: (AGENT_UNREACHABLE, AGENT_AUTH_FAILED),
    503: (AGENT_UNAVAILABLE, AUTH_UNAVAILABLE),
    504: (AGENT_TIMEOUT,),
}


def failure_with_codes(name: str, codes: tuple[str, ...], description: str) -> type[Failure]:
    """A Failure whose ``error.code`` is one of ``codes``, listed in the OpenAPI document (an enum, or a const)."""
    body = create_model(
        f"{name}Error",
        __base__=ErrorBody,
        code=(Literal[codes], Field(description="One of " + ", ".join(codes) + ".")),  # type: ignore[arg-type]
    )
    model: type[Failure] = create_model(name, __base__=Failure, __doc__=description, error=(body, ...))
    return model


def agent_failures(name: str, extra: Mapping[int, tuple[str, ...]] | None = None) -> dict[int, type[Failure]]:
    """The documented 502, 503 and 504 answers of an agent-backed endpoint, with ``extra`` codes by status."""
    return {
        status: failure_with_codes(
            f"{name}{status}",
            codes + tuple((extra or {}).get(status, ())),
            f"The host's agent could not be asked, or failed ({status}).",
        )
        for status, codes in AGENT_FAILURE_CODES.items()
    }


def documents_failures(failures: Mapping[int, type[Failure]], *, host_scoped: bool = True) -> Callable[[F], F]:
    """Add ``failures`` (status: model) to a route's OpenAPI responses, and the host scope's 400 and 404."""

    def decorator(func: F) -> F:
        for status in (400, 404) if host_scoped else ():  # ?host= empty, no such host (see _hostscope)
            func = document_response(Failure, status)(func)
        for status, model in failures.items():
            func = document_response(model, status)(func)
        return func

    return decorator


AGENT_FAILURES = agent_failures("AgentFailure")


def documents_agent_errors(func: F) -> F:
    """Add the gateway-to-agent failures (502, 503, 504, with their codes) and the host scope's to a route's OpenAPI."""
    return documents_failures(AGENT_FAILURES)(func)


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
) -> None:
    """Pipe the current Quart websocket to the agent's ``path`` and back until either side closes.

    ``first``: text messages sent to the agent before relaying (e.g. the subscribe message the gateway read).
    """
    async with agent_websocket(path, host=host, params=params) as upstream:
        for message in first:
            await upstream.send_str(message)

        async def downstream_to_agent() -> None:
            while True:
                data = await websocket.receive()
                if isinstance(data, bytes):
                    await upstream.send_bytes(data)
                else:
                    await upstream.send_str(data)

        async def agent_to_downstream() -> None:
            async for message in upstream:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    await websocket.send(message.data)
                else:
                    break

        tasks = [asyncio.create_task(downstream_to_agent()), asyncio.create_task(agent_to_downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = [
    "AgentClient",
    "HostQuery",
    "agent_failures",
    "agent_websocket",
    "agents",
    "ask_agent",
    "documents_agent_errors",
    "documents_failures",
    "install",
    "relay_websocket",
]
