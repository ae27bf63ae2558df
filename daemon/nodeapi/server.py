"""The agent's node-local API: what is imperative or streamed on this host, for the gateway only.

An aiohttp server on the agent's own event loop (aiohttp is already the
agent's HTTP stack, for the Kubernetes client and ``/metrics``; it serves
WebSockets and TLS without a second ASGI server taking over signals).

Security
    Every request needs ``Authorization: Bearer <token>``. The token is checked
    with a Kubernetes TokenReview for the audience ``vapor-agent`` (results
    cached for ``CACHE_SECONDS``): a token the API server would accept for
    itself is refused here, and the gateway's agent token is refused by the
    API server. Only the identity of ``--api-allowed-user`` (default the gateway's
    ServiceAccount, ``system:serviceaccount:vapor-system:vapor-gateway``) may
    call: no token or a token the API server does not accept is 401
    UNAUTHORIZED, any other identity 403 PERMISSION_DENIED. The server speaks
    TLS with a self-signed certificate kept in ``<state-dir>/nodeapi/``; the
    agent publishes the URL and the certificate's SHA-256 fingerprint in
    ``Host.status.agentEndpoint`` and the gateway pins that fingerprint
    (``--no-api-tls`` serves plain HTTP, for debugging only).

Adding endpoints (other modules of the agent)
    Write a module ``daemon/nodeapi/<area>.py`` with::

        from aiohttp import web
        from .server import NodeContext, NodeAPIError, ok, read_body, query_int

        def routes(node: NodeContext) -> list[web.RouteDef]:
            async def summary(request: web.Request) -> web.Response:
                return ok({"hostname": ...})            # {"status": "success", "data": ...}
            return [web.get("/system/summary", summary)]

    and add ``"vapor.agent.nodeapi.<area>"`` to ``ROUTE_MODULES`` below. Paths
    mirror the gateway's without ``/api/v1``. Raise ``NodeAPIError(status,
    code, message, details)`` (or any other Refusal of _refusal, such as
    ContainerError or AccountError)
    and the client gets the contract's error envelope, which the gateway
    passes through unchanged. ``node.config`` is the AgentConfig, ``node.kube``
    the agent's Kubernetes connection, ``node.app.on_cleanup`` takes
    teardown hooks. WebSocket routes are ordinary aiohttp ones
    (``web.WebSocketResponse``); the same token check runs on the upgrade.
    A dispatch-table module (``dispatch(method, path, query, body)`` answering
    ``(status, data)``) plugs in with ``dispatch_routes(["/docker"], dispatch)``.
    Blocking work (psutil, PAM, useradd, the journal) goes through
    ``asyncio.to_thread``: the agent's loop also runs its heartbeat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.aio import client
from pydantic import BaseModel, ValidationError

from vapor.kube import Kube, KubeError
from vapor.kube._client import call
from vapor.model import Host, names

from .._config import AgentConfig
from .._refusal import Refusal

log = logging.getLogger("vapor.agent.nodeapi")

# The modules whose ``routes(node)`` make up the API, in order.
ROUTE_MODULES: list[str] = [
    "vapor.agent.nodeapi.system",
    "vapor.agent.nodeapi.users",
    "vapor.agent.nodeapi.accounts",  # password checks for logins (VAPOR_AUTH_HOSTS)
    "vapor.agent.nodeapi.journal",
    "vapor.agent.nodeapi.containers",
    "vapor.agent.nodeapi.storage",
    "vapor.agent.nodeapi.ws",  # /ws/metrics, /ws/logs, /ws/terminal
]

DEFAULT_PORT = 9443
DEFAULT_ALLOWED_USER = "system:serviceaccount:vapor-system:vapor-gateway"
FIELD_MANAGER = "vapor-agent-nodeapi"  # owns Host.status.agentEndpoint only
CACHE_SECONDS = 10.0  # how long a TokenReview answer is trusted
CACHE_MAX = 1024
MAX_BODY = 1 << 20
CERT_VALIDITY = dt.timedelta(days=825)
CERT_RENEW_BEFORE = dt.timedelta(days=30)
PUBLISH_INTERVAL = 30.0  # how often the published endpoint is checked against the Host

UNAUTHORIZED = "UNAUTHORIZED"
PERMISSION_DENIED = "PERMISSION_DENIED"
INVALID_INPUT = "INVALID_INPUT"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
INTERNAL_ERROR = "INTERNAL_ERROR"
AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"

M = TypeVar("M", bound=BaseModel)
CALLER = web.RequestKey("caller", str)  # who called (the TokenReview's username), for handlers that log it


class NodeAPIError(Refusal):
    """A refusal of the node API itself (see _refusal)."""


@dataclass
class NodeContext:
    """What route modules get: the agent's settings, its Kubernetes connection and the aiohttp app."""

    config: AgentConfig
    kube: Kube | None
    app: web.Application
    extras: dict[str, Any] = field(default_factory=dict)  # shared per-server state, by module


RouteFactory = Callable[[NodeContext], Iterable[web.AbstractRouteDef]]


# --- responses -------------------------------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def ok(data: Any, status: int = 200) -> web.Response:
    """``{"status": "success", "data": data}``."""
    return web.Response(
        status=status, body=_dumps({"status": "success", "data": data}), content_type="application/json"
    )


def failure(status: int, code: str, message: str, details: str | None = None) -> web.Response:
    """The contract's error envelope."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return web.Response(
        status=status, body=_dumps({"status": "error", "error": error}), content_type="application/json"
    )


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


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated by ``model``; INVALID_INPUT naming the first bad field otherwise."""
    raw = await request.read()
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise NodeAPIError(400, INVALID_INPUT, "the request body is not valid JSON") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise NodeAPIError(400, INVALID_INPUT, f"invalid body: {where}: {message}" if where else message) from None


def dispatch_routes(
    prefixes: Iterable[str],
    dispatch: Callable[[str, str, Mapping[str, str], Any], Awaitable[tuple[int, Any]]],
) -> list[web.RouteDef]:
    """Routes that hand every method under each prefix to ``dispatch(method, path, query, body)``."""

    async def handler(request: web.Request) -> web.Response:
        body = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                raise NodeAPIError(400, INVALID_INPUT, "the request body is not valid JSON") from None
        status, data = await dispatch(request.method, request.path, dict(request.query), body)
        return ok(data, status)

    out: list[web.RouteDef] = []
    for prefix in prefixes:
        prefix = "/" + prefix.strip("/")
        out.append(web.route("*", prefix, handler))
        out.append(web.route("*", prefix + "/{tail:.*}", handler))
    return out


# --- who may call ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """The API server's answer about one token."""

    authenticated: bool
    username: str = ""
    error: str = ""


class TokenReviewer:
    """Checks bearer tokens with TokenReview, remembering answers for a few seconds."""

    def __init__(self, kube: Kube, ttl: float = CACHE_SECONDS, audiences: list[str] | None = None) -> None:
        self.api = client.AuthenticationV1Api(kube.api)
        self.ttl = ttl
        self.audiences = audiences
        self._cache: dict[bytes, tuple[float, Review]] = {}
        self.reviews = 0  # TokenReviews sent (for tests and benchmarks)

    async def review(self, token: str) -> Review:
        """Whether the API server accepts ``token``, and for whom; KubeError when it cannot say."""
        key = hashlib.sha256(token.encode()).digest()  # never keep the token itself
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=self.audiences))
        answer = await call(self.api.create_token_review(body))
        self.reviews += 1
        status = answer.status
        # With audiences asked for, the API server authenticates a token only for one of them, and says which.
        meant_for_us = self.audiences is None or bool(set(self.audiences) & set((status and status.audiences) or []))
        if status is not None and status.authenticated and status.user is not None and meant_for_us:
            review = Review(True, status.user.username or "")
        else:
            review = Review(False, error=(status.error if status is not None else "") or "")
        if len(self._cache) >= CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
        self._cache[key] = (now + self.ttl, review)
        return review


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not token.strip():
        raise NodeAPIError(401, UNAUTHORIZED, "this API needs the header Authorization: Bearer <token>")
    return token.strip()


def _auth_middleware(reviewer: TokenReviewer, allowed_user: str) -> Any:
    @web.middleware
    async def authenticate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        token = _bearer(request)
        try:
            review = await reviewer.review(token)
        except (KubeError, OSError, TimeoutError) as exc:
            log.warning("could not review a token", extra={"error": str(exc)})
            raise NodeAPIError(503, AUTH_UNAVAILABLE, "the Kubernetes API could not check the token; retry") from None
        if not review.authenticated:
            log.info("refused a token", extra={"peer": request.remote, "path": request.path, "reason": review.error})
            raise NodeAPIError(401, UNAUTHORIZED, "the token was not accepted by the Kubernetes API")
        if review.username != allowed_user:
            log.info("refused a caller", extra={"peer": request.remote, "path": request.path, "user": review.username})
            raise NodeAPIError(403, PERMISSION_DENIED, f"{review.username} may not call this node's API")
        request[CALLER] = review.username
        return await handler(request)

    return authenticate


@web.middleware
async def _envelope_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure, including the auth checks, as the contract's error envelope."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 401: UNAUTHORIZED, 403: PERMISSION_DENIED}.get(
            exc.status, INVALID_INPUT if exc.status < 500 else INTERNAL_ERROR
        )
        response = failure(exc.status, code, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Refusal as exc:
        return failure(exc.status, exc.code, exc.message, exc.details)
    except Exception:
        log.exception("node API request failed", extra={"path": request.path, "method": request.method})
        return failure(500, INTERNAL_ERROR, "internal error; the agent's log has the details")


# --- TLS -------------------------------------------------------------------------------------------------------


def _load_or_make_cert(folder: Path, address: str) -> tuple[Path, Path]:
    """The serving certificate and key under ``folder``, made (self-signed, P-256) when missing or expiring."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    now = dt.datetime.now(dt.UTC)
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - now > CERT_RENEW_BEFORE:
                return cert_path, key_path
        except ValueError:
            pass
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vapor-agent {socket.gethostname()}"[:64])])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    except ValueError:
        sans.append(x509.DNSName(address))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made the node API's serving certificate", extra={"path": str(cert_path)})
    return cert_path, key_path


def cert_sha256(cert_path: Path) -> str:
    """Lower-case hex SHA-256 of the certificate's DER form (what the gateway pins)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- the server ------------------------------------------------------------------------------------------------


def node_address() -> str:
    """The node's address: ``$NODE_IP`` (the chart sets it), else the source address of the default route."""
    env = os.environ.get("NODE_IP", "").strip()
    if env:
        return env
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a route lookup, nothing is sent
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def default_bind() -> str:
    """``<node address>:9443``."""
    address = node_address()
    return f"[{address}]:{DEFAULT_PORT}" if ":" in address else f"{address}:{DEFAULT_PORT}"


def split_bind(bind: str) -> tuple[str, int]:
    """``address:port`` (``[v6]:port`` for IPv6) as its parts; ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected address:port, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_routes(node: NodeContext, modules: Iterable[str]) -> list[web.AbstractRouteDef]:
    """The routes of every module in ``modules`` (each has ``routes(node)``)."""
    out: list[web.AbstractRouteDef] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a module that is there but fails to import is a bug: say so
                raise
            log.warning("node API module missing; its endpoints are not served", extra={"module": name})
            continue
        out.extend(module.routes(node))
    return out


class NodeAPI:
    """The node-local API server: ``start()`` listens and publishes the endpoint, ``stop()`` closes."""

    def __init__(
        self,
        config: AgentConfig,
        kube: Kube,
        *,
        modules: Iterable[str] | None = None,
        extra_routes: Iterable[RouteFactory] = (),
        host: Callable[[], Host | None] | None = None,
    ) -> None:
        if not config.api_bind:
            raise ValueError("the node API is off (--api-bind '')")
        self.config = config
        self.kube = kube
        self.bind_host, self.port = split_bind(config.api_bind)
        self.reviewer = TokenReviewer(kube, audiences=[names.AGENT_AUDIENCE])
        self.app = web.Application(
            middlewares=[_envelope_middleware, _auth_middleware(self.reviewer, config.api_allowed_user)],
            client_max_size=MAX_BODY,
        )
        self.node = NodeContext(config=config, kube=kube, app=self.app)
        routes = load_routes(self.node, ROUTE_MODULES if modules is None else modules)
        for factory in extra_routes:
            routes.extend(factory(self.node))
        self.app.add_routes(routes)
        self._host = host
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.url = ""
        self.fingerprint: str | None = None

    @property
    def advertised_address(self) -> str:
        """The address the gateway should use (the bind address, or this node's address for a wildcard)."""
        if self.bind_host in ("0.0.0.0", "::", ""):
            return node_address()
        return self.bind_host

    def endpoint(self) -> dict[str, Any]:
        """``Host.status.agentEndpoint`` as written."""
        out: dict[str, Any] = {"url": self.url}
        if self.fingerprint:
            out["certSha256"] = self.fingerprint
        return out

    async def start(self) -> None:
        """Listen (TLS unless --no-api-tls) and start publishing the endpoint; OSError when the port is taken."""
        address = self.advertised_address
        context = None
        if self.config.api_tls:
            cert, key = await asyncio.to_thread(_load_or_make_cert, self.config.state_dir / "nodeapi", address)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert, key)
            self.fingerprint = cert_sha256(cert)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.bind_host, self.port, ssl_context=context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:  # tests: the kernel picked the port
            server: Any = site._server
            self.port = int(server.sockets[0].getsockname()[1])
        shown = f"[{address}]" if ":" in address else address
        self.url = f"{'https' if context else 'http'}://{shown}:{self.port}"
        log.info("serving the node API", extra={"url": self.url, "tls": context is not None})
        self._publisher = asyncio.create_task(self._publish_forever(), name="nodeapi-publish")

    async def publish(self) -> bool:
        """Write the endpoint into the Host's status when it is not there yet; whether it wrote."""
        host = self._host() if self._host is not None else None
        wanted = self.endpoint()
        if host is not None and host.status is not None:
            current = host.status.agent_endpoint
            if current is not None and current.model_dump(by_alias=True, exclude_none=True) == wanted:
                return False
        await self.kube.resources(Host).apply_status(
            self.config.node_name, {"agentEndpoint": wanted}, field_manager=FIELD_MANAGER, force=True
        )
        log.info("published the node API endpoint", extra=wanted)
        return True

    async def _publish_forever(self) -> None:
        while True:
            try:
                await self.publish()
            except (KubeError, OSError, TimeoutError) as exc:
                log.warning("could not publish the node API endpoint", extra={"error": str(exc)})
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def stop(self) -> None:
        """Stop listening (the endpoint stays published: the next agent on this node serves it again)."""
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
