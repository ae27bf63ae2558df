"""One sample of the host's cpu, memory, disk and network figures, for /ws/metrics (psutil)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psutil  # type: ignore[import-untyped]

INTERVAL = 1.0  # seconds between samples


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sample() -> list[dict[str, Any]]:
    """Four messages ``{type: 'metric', metric, timestamp, data}``; blocking (run in a thread)."""
    stamp = _now()
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    io = psutil.disk_io_counters()
    net = psutil.net_io_counters()
    load = psutil.getloadavg()
    data: dict[str, dict[str, Any]] = {
        "cpu": {
            "usage_percent": psutil.cpu_percent(interval=None),
            "per_cpu_percent": psutil.cpu_percent(interval=None, percpu=True),
            "cores": psutil.cpu_count() or 1,
            "load_average": list(load),
        },
        "memory": {
            "total": memory.total,
            "used": memory.used,
            "available": memory.available,
            "usage_percent": memory.percent,
        },
        "disk": {
            "total": disk.total,
            "used": disk.used,
            "free": disk.free,
            "usage_percent": disk.percent,
            "read_bytes": io.read_bytes if io else 0,
            "write_bytes": io.write_bytes if io else 0,
        },
        "network": {
            "bytes_sent": net.bytes_sent,
            "bytes_recv": net.bytes_recv,
            "packets_sent": net.packets_sent,
            "packets_recv": net.packets_recv,
        },
    }
    return [{"type": "metric", "metric": name, "timestamp": stamp, "data": values} for name, values in data.items()]
