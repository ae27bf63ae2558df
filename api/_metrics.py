"""Prometheus metrics and the health endpoints of the gateway.

- ``GET /metrics``: Prometheus text format. Requests are counted by method,
  route template (``/api/v1/vms/<namespace>/<name>``, never the raw path, so
  the number of series stays bounded) and status, and timed by method and route.
  Login hosts that could not be asked are counted by host and error code.
- ``GET /healthz``: 200 while the process serves requests (liveness).
- ``GET /readyz``: 200 once the gateway has connected and its Host and
  VirtualMachine caches have synced, 503 before (readiness: a Service sends no
  request to a gateway that would answer from empty caches).

These three paths need no token (probes and scrapers carry none), are not
rate limited (they are outside /api/) and are left out of the OpenAPI document.
They tell nothing about hosts, VMs or users.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from quart import Blueprint, Quart, Response, current_app, g, request
from quart_schema import hide

REQUESTS = Counter(
    "vapor_gateway_http_requests",
    "HTTP requests answered by the gateway, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "vapor_gateway_http_request_duration_seconds",
    "Time from receiving a request to having its response, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LOGIN_HOST_FAILURES = Counter(
    "vapor_gateway_login_host_failures",
    "Password checks and account lookups a login host (VAPOR_AUTH_HOSTS) could not answer, by host and error code;"
    " the next login host, if any, was asked instead.",
    ["host", "code"],
)
UNMATCHED = "unmatched"  # requests no route took (404s): one series, whatever the path

blueprint = Blueprint("observability", __name__)


@blueprint.get("/healthz")
@hide
async def healthz() -> Response:
    """Liveness: the process answers."""
    return Response("ok\n", content_type="text/plain")


@blueprint.get("/readyz")
@hide
async def readyz() -> Response:
    """Readiness: connected, and the caches have synced."""
    if current_app.extensions.get("vapor") is None:
        return Response("caches not synced yet\n", status=503, content_type="text/plain")
    return Response("ok\n", content_type="text/plain")


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """Prometheus text format of this process's metrics."""
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def install(app: Quart) -> None:
    """Serve the three endpoints and measure every request (call before other before_request hooks)."""
    app.register_blueprint(blueprint)

    @app.before_request
    async def _start_timer() -> None:
        g.vapor_started = time.perf_counter()

    @app.after_request
    async def _observe(response: Response) -> Response:
        started = g.get("vapor_started")
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        if started is not None:
            LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response
