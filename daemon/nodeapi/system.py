"""``/system/summary``, ``/system/cpu`` and ``/system/memory`` of the node-local API (psutil, read on demand).

The summary has the contract's fields (hostname, os, kernel, uptime in
seconds, load_average) plus boot_time; CPU and memory answer what the
contract leaves open with psutil's numbers, named as in Host status.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psutil  # type: ignore[import-untyped]
from aiohttp import web

from ..host import inventory as _inventory
from .context import NodeContext
from .envelope import ok

CPU_SAMPLE_SECONDS = 0.1  # usage is measured over this window, so no other caller's sampling skews it


def summary() -> dict[str, Any]:
    """Hostname, OS, kernel, uptime (seconds), load average and boot time."""
    system = _inventory.system()
    return {
        "hostname": system["hostname"],
        "os": system["os"],
        "kernel": system["kernel"],
        "uptime": system["uptime_seconds"],
        "load_average": system["load_average"],
        "boot_time": system["boot_time"].isoformat().replace("+00:00", "Z"),
    }


def cpu() -> dict[str, Any]:
    """Model, cores, threads, frequency, load, and usage (total, per CPU, by kind of time) over a short sample."""
    info = _inventory.cpu()
    per_cpu = psutil.cpu_times_percent(interval=CPU_SAMPLE_SECONDS, percpu=True)
    count = max(1, len(per_cpu))
    fields = per_cpu[0]._fields if per_cpu else ()
    times = {name: round(sum(getattr(t, name) for t in per_cpu) / count, 1) for name in fields}
    usage = [round(100.0 - t.idle - getattr(t, "iowait", 0.0), 1) for t in per_cpu]
    return {
        "model": info.model,
        "cores": info.cores,
        "threads": info.threads,
        "frequency_mhz": info.frequency_mhz,
        "usage_percent": round(max(0.0, min(100.0, sum(usage) / count)), 1),
        "per_cpu_percent": [max(0.0, min(100.0, u)) for u in usage],
        "times_percent": times,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def memory() -> dict[str, Any]:
    """Memory and swap, in bytes and percent."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return {
        "total": vm.total,
        "available": vm.available,
        "used": vm.total - vm.available,
        "free": vm.free,
        "buffers": getattr(vm, "buffers", 0),
        "cached": getattr(vm, "cached", 0),
        "shared": getattr(vm, "shared", 0),
        "usage_percent": round(vm.percent, 1),
        "swap_total": swap.total,
        "swap_used": swap.used,
        "swap_free": swap.free,
        "swap_usage_percent": round(swap.percent, 1),
    }


def routes(node: NodeContext) -> list[web.RouteDef]:
    """The three read-only system endpoints."""

    async def get_summary(_request: web.Request) -> web.Response:
        return ok(await asyncio.to_thread(summary))

    async def get_cpu(_request: web.Request) -> web.Response:
        return ok(await asyncio.to_thread(cpu))

    async def get_memory(_request: web.Request) -> web.Response:
        return ok(await asyncio.to_thread(memory))

    return [
        web.get("/system/summary", get_summary),
        web.get("/system/cpu", get_cpu),
        web.get("/system/memory", get_memory),
    ]
