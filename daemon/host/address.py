"""The node's address, and ``address:port`` settings taken apart (the node API's and the metrics' binds)."""

from __future__ import annotations

import os
import socket


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


def join_bind(address: str, port: int) -> str:
    """``address:port``, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def split_bind(bind: str) -> tuple[str, int]:
    """``address:port`` (``[v6]:port`` for IPv6) as its parts; ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected address:port, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
