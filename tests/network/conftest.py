"""Fixtures of the network tests: a real network namespace per test, an agent managing it, the gateway app.

Each test gets its own namespace ``vn-<hex>`` holding a veth pair (``va`` and
``vb``, both up) and an empty bridge ``br0``, plus an ``uplink`` veth whose
peer sits in the machine's namespace with an address of a private /24 picked
for the test. A TCP listener on that peer address stands for the API server:
the agent is started with ``--network-probe`` at it, so ``uplink`` is the
interface that carries the node's "API traffic", and cutting it off makes the
agent roll back. The machine's own interfaces are never touched; everything is
removed after the test, even when it failed.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestAppProtocol as TestApp

from vapor.gateway import create_app

from ..agent.conftest import agent_factory, libvirtd, qemu_tmp, virt  # noqa: F401  (fixtures)
from ..gateway.conftest import (  # noqa: F401  (fixtures)
    client,
    gateway_config,
    kube,
    pam_service_name,
    secret_namespace,
    users,
)
from ..support.agent import AgentProcess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` (iproute2), as a person at the host would."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class Netns:
    """The test's network namespace and the addresses around it."""

    name: str
    subnet: str  # "10.a.b" of the uplink's /24
    probe_port: int

    @property
    def peer_address(self) -> str:
        """The machine-side end of the uplink: the stand-in API server listens here."""
        return f"{self.subnet}.1"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <netns> ...``."""
        return ip("-n", self.name, *args, check=check)

    def link_up(self, name: str) -> bool:
        """Whether the link is administratively up (the UP flag)."""
        out = self.ip("-o", "link", "show", "dev", name).stdout
        return "<" in out and "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")

    def addresses(self, name: str) -> set[str]:
        """Global addresses of the link in CIDR."""
        out = self.ip("-o", "addr", "show", "dev", name, "scope", "global").stdout
        return {line.split()[3] for line in out.splitlines()}

    def default_route(self) -> str:
        """``ip route show default`` inside the namespace."""
        return self.ip("route", "show", "default").stdout.strip()


class ProbeListener:
    """FAKE API SERVER endpoint: a TCP listener that accepts and closes, only so the agent's reach check
    has a target behind the test's uplink (the real API server listens on the machine's loopback)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _free_subnet() -> str:
    used = ip("-4", "-o", "addr", "show").stdout
    for _ in range(50):
        subnet = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}"
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 for the test's uplink")


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh network namespace with va/vb (veth, up), br0 (bridge) and uplink (veth to the machine, addressed)."""
    suffix = uuid.uuid4().hex[:6]
    name, host_end = f"vn-{suffix}", f"vnh-{suffix}"
    subnet = _free_subnet()
    ip("netns", "add", name)
    listener: ProbeListener | None = None
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        ip("-n", name, "link", "set", "va", "up")
        ip("-n", name, "link", "set", "vb", "up")
        ip("-n", name, "link", "add", "br0", "type", "bridge")
        ip("link", "add", host_end, "type", "veth", "peer", "name", "uplink", "netns", name)
        ip("addr", "add", f"{subnet}.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", name, "addr", "add", f"{subnet}.2/24", "dev", "uplink")
        ip("-n", name, "link", "set", "uplink", "up")
        listener = ProbeListener(f"{subnet}.1")
        yield Netns(name=name, subnet=subnet, probe_port=listener.port)
    finally:
        if listener is not None:
            listener.close()
        ip("link", "del", host_end, check=False)
        ip("netns", "del", name, check=False)


@pytest.fixture
def network_agent(
    agent_factory: Callable[..., AgentProcess],  # noqa: F811
    netns: Netns,
    unique: Callable[[str], str],
) -> Iterator[AgentProcess]:
    """An agent for a fresh node that manages the test's namespace; rolls back after 3 s cut off."""
    agent = agent_factory(
        unique("vnet-node"),
        extra_args=(
            "--netns", netns.name,
            "--network-probe", f"{netns.peer_address}:{netns.probe_port}",
            "--network-resync", "2",
            "--network-rollback-grace", "3",
            "--api-bind", "",  # no node-local API: not what these tests are about
        ),
    ).start()  # fmt: skip
    yield agent
    print(agent.tail(60))  # shown when the test failed


@pytest.fixture
async def app(gateway_config: dict[str, Any]) -> AsyncIterator[TestApp]:  # noqa: F811
    """The gateway app, with a startup timeout that allows for a busy shared machine (the default is 6 s)."""
    test_app = create_app({**gateway_config, "NETWORK_WAIT": 60.0}).test_app()
    test_app.startup_timeout = 60  # type: ignore[attr-defined]
    async with test_app:
        yield test_app
