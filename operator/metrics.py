"""The operator's Prometheus metrics, served with ``vapor-operator --metrics-bind``.

Metrics (all in the process's default registry):

- ``vapor_operator_reconciles_total{handler,result}`` and
  ``vapor_operator_reconcile_duration_seconds{handler}``: every call of a kopf
  handler (event, timer, change handlers; not the indexes), ``result`` is
  ``success`` or ``error``. Counted by :func:`instrument`, which wraps the
  handlers kopf has registered, so handler modules need no code for it.
- ``vapor_operator_vms_placed_total``: VirtualMachines this replica placed on a host.
- ``vapor_operator_migrations_total{phase}``: Migrations that entered each phase
  (call :func:`migration_entered` where a Migration's phase is written).

Liveness stays with kopf's own endpoint (``--liveness``); a replica paused by
peering is live, only not acting, and its counters stay still.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf
from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger("vapor.operator.metrics")

RECONCILES = Counter(
    "vapor_operator_reconciles",
    "Calls of the operator's kopf handlers, by handler and result (success or error).",
    ["handler", "result"],
)
RECONCILE_SECONDS = Histogram(
    "vapor_operator_reconcile_duration_seconds",
    "Time one call of a kopf handler took, by handler.",
    ["handler"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
VMS_PLACED = Counter("vapor_operator_vms_placed", "VirtualMachines placed on a host by this replica.")
MIGRATIONS = Counter(
    "vapor_operator_migrations",
    "Migrations that entered each phase (written by this replica).",
    ["phase"],
)


def migration_entered(phase: str) -> None:
    """Count one Migration entering ``phase``."""
    MIGRATIONS.labels(phase).inc()


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` counted and timed under ``name``; async stays async (kopf calls sync handlers in threads)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = "error"
            try:
                value = await fn(*args, **kwargs)
                result = "success"
                return value
            finally:
                RECONCILE_SECONDS.labels(name).observe(time.perf_counter() - started)
                RECONCILES.labels(name, result).inc()

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = "error"
        try:
            value = fn(*args, **kwargs)
            result = "success"
            return value
        finally:
            RECONCILE_SECONDS.labels(name).observe(time.perf_counter() - started)
            RECONCILES.labels(name, result).inc()

    return timed


def instrument(registry: kopf.OperatorRegistry | None = None) -> list[str]:
    """Wrap every registered event, timer and change handler with the reconcile metrics; their names.

    kopf (pinned in pyproject.toml) offers no middleware, so this replaces
    each handler in its registry by a copy whose ``fn`` is timed. Call it once,
    after the handler modules are imported and before ``kopf.run``.
    """
    registry = registry or kopf.get_default_registry()
    names: list[str] = []
    for part in (registry._watching, registry._spawning, registry._changing):
        handlers: list[Any] = part._handlers
        for i, handler in enumerate(handlers):
            name = getattr(handler.fn, "__name__", str(handler.id))
            handlers[i] = dataclasses.replace(handler, fn=_timed(name, handler.fn))
            RECONCILES.labels(name, "success")  # every series exists from the start, at 0
            RECONCILES.labels(name, "error")
            names.append(name)
    return names


def serve(bind: str) -> None:
    """Serve /metrics on ``bind`` (``address:port``) from a daemon thread."""
    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0")
    log.info("serving metrics on %s", bind)
