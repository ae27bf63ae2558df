"""The agent's node-local API: what is imperative or streamed on this host, for the gateway only.

An aiohttp server on the agent's own event loop (aiohttp is already the
agent's HTTP stack, for the Kubernetes client and ``/metrics``; it serves
WebSockets and TLS without a second ASGI server taking over signals). Its
parts, one module each:

- ``auth``: the bearer token, checked by TokenReview; one allowed caller.
- ``tls``: the self-signed serving certificate the gateway pins
  (``--no-api-tls`` serves plain HTTP, for debugging only).
- ``endpoint``: the URL and fingerprint published in ``Host.status.agentEndpoint``.
- ``envelope``: every answer in the contract's envelope.
- ``context``: what route modules get and use (see there to add endpoints).
- the route modules, listed in :data:`ROUTES`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from vapor.kube import Kube
from vapor.model import Host, names

from .._config import AgentConfig
from ..controllers.images import ImageController
from ..host.address import join_bind, node_address, split_bind
from ..host.libvirt import Libvirt
from . import accounts, console, containers, images, journal, storage, system, users, ws
from .auth import TokenReviewer, auth_middleware
from .context import NodeContext, RouteFactory
from .endpoint import EndpointPublisher
from .envelope import envelope_middleware
from .tls import cert_sha256, load_or_make_cert

log = logging.getLogger("vapor.agent.nodeapi")

# Every route module of the API, in order.
ROUTES: tuple[RouteFactory, ...] = (
    system.routes,
    users.routes,
    accounts.routes,  # password checks for logins (VAPOR_AUTH_HOSTS)
    journal.routes,
    containers.routes,
    storage.routes,
    images.routes,  # PUT /images/{name}/upload (when the agent fetches Images)
    ws.routes,  # /ws/metrics, /ws/logs, /ws/terminal
    console.routes,  # /ws/vms/{namespace}/{name}/console and /vnc (with the agent's libvirt)
)
MAX_BODY = 1 << 20


class NodeAPI:
    """The node-local API server: ``start()`` listens and publishes the endpoint, ``stop()`` closes.

    ``routes`` replaces :data:`ROUTES` (tests serve one module at a time).
    """

    def __init__(
        self,
        config: AgentConfig,
        kube: Kube,
        *,
        routes: Iterable[RouteFactory] = ROUTES,
        host: Callable[[], Host | None] | None = None,
        images: ImageController | None = None,
        libvirt: Libvirt | None = None,
    ) -> None:
        if not config.api_bind:
            raise ValueError("the node API is off (--api-bind '')")
        self.config = config
        self.kube = kube
        self.bind_host, self.port = split_bind(config.api_bind)
        self.reviewer = TokenReviewer(kube, audiences=[names.AGENT_AUDIENCE])
        self.app = web.Application(
            middlewares=[envelope_middleware, auth_middleware(self.reviewer, config.api_allowed_user)],
            client_max_size=MAX_BODY,
        )
        self.app.on_response_prepare.append(self._name_the_node)
        extras: dict[str, Any] = {"images": images, "libvirt": libvirt}
        self.node = NodeContext(
            config=config, kube=kube, app=self.app, extras={k: v for k, v in extras.items() if v is not None}
        )
        for factory in routes:
            self.app.add_routes(factory(self.node))
        self.publisher = EndpointPublisher(kube, config.node_name, host)
        self._runner: web.AppRunner | None = None
        self._publishing: asyncio.Task[None] | None = None

    async def _name_the_node(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[names.AGENT_NODE_HEADER] = self.config.node_name

    @property
    def url(self) -> str:
        """Where the API is served (empty before ``start()``)."""
        return self.publisher.url

    @property
    def fingerprint(self) -> str | None:
        """The serving certificate's SHA-256 (None without TLS)."""
        return self.publisher.fingerprint

    @property
    def advertised_address(self) -> str:
        """The address the gateway should use (the bind address, or this node's address for a wildcard)."""
        if self.bind_host in ("0.0.0.0", "::", ""):
            return node_address()
        return self.bind_host

    async def start(self) -> None:
        """Listen (TLS unless --no-api-tls) and start publishing the endpoint; OSError when the port is taken."""
        address = self.advertised_address
        context = None
        if self.config.api_tls:
            cert, key = await asyncio.to_thread(load_or_make_cert, self.config.state_dir / "nodeapi", address)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert, key)
            self.publisher.fingerprint = cert_sha256(cert)
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
        self.publisher.url = f"{'https' if context else 'http'}://{join_bind(address, self.port)}"
        log.info("serving the node API", extra={"url": self.url, "tls": context is not None})
        self._publishing = asyncio.create_task(self.publisher.run(), name="nodeapi-publish")

    async def publish(self) -> bool:
        """Write the endpoint into the Host's status when it is not there yet; whether it wrote."""
        return await self.publisher.publish()

    async def stop(self) -> None:
        """Stop listening (the endpoint stays published: the next agent on this node serves it again)."""
        if self._publishing is not None:
            self._publishing.cancel()
            await asyncio.gather(self._publishing, return_exceptions=True)
            self._publishing = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
