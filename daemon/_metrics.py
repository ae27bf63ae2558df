"""The agent's Prometheus metrics and its health endpoints, served with ``--metrics-bind``.

- ``GET /metrics``: Prometheus text format: libvirt call latency by call
  (``vapor_agent_libvirt_call_duration_seconds``), failed libvirt calls, the
  Host status writes of the inventory (``vapor_agent_inventory_writes_total``),
  and the process's own numbers.
- ``GET /healthz``: 200 while the agent's event loop answers (liveness).
- ``GET /readyz``: 200 once the agent has started (Host registered, heartbeat
  and VM controller running) and while its libvirt connection is open; 503
  otherwise, with the reason in the body.

The server runs on the agent's asyncio loop (aiohttp, already a dependency of
the Kubernetes client); the paths carry no node secrets and need no token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .host.address import split_bind

log = logging.getLogger("vapor.agent.metrics")

LIBVIRT_CALL_SECONDS = Histogram(
    "vapor_agent_libvirt_call_duration_seconds",
    "Time a blocking libvirt call took, by call (the libvirt method or helper run in a worker thread).",
    ["call"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LIBVIRT_CALL_ERRORS = Counter(
    "vapor_agent_libvirt_call_errors",
    "libvirt calls that raised, by call.",
    ["call"],
)

Readiness = Callable[[], str | None]  # None when ready, else why not


class InventoryWrites(Collector):
    """``vapor_agent_inventory_writes_total``, read from the running Host reporter's own count."""

    def __init__(self, writes: Callable[[], int]) -> None:
        self._writes = writes

    def collect(self) -> Iterable[Metric]:
        """One sample: the Host status writes so far."""
        family = CounterMetricFamily(
            "vapor_agent_inventory_writes", "Host status writes (server-side apply) by this agent's inventory."
        )
        family.add_metric([], self._writes())
        yield family


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``bind`` (``address:port``)."""

    def __init__(self, bind: str, readiness: Readiness, writes: Callable[[], int]) -> None:
        self.host, self.port = split_bind(bind)
        self.readiness = readiness
        self._collector = InventoryWrites(writes)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the address is taken."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        REGISTRY.register(self._collector)
        self._runner = runner
        log.info("serving metrics and health", extra={"bind": f"{self.host}:{self.port}"})

    async def stop(self) -> None:
        """Stop listening."""
        runner, self._runner = self._runner, None
        if runner is not None:
            REGISTRY.unregister(self._collector)
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        why = self.readiness()
        if why is not None:
            return web.Response(status=503, text=why + "\n")
        return web.Response(text="ok\n")
