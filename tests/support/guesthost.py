"""One Testbed host with a NAT network, and the guest image staged where its QEMU can read it.

The host is a libvirtd in its own network namespace (tests/support/hosts.py):
the NAT network's bridge, dnsmasq and firewall rules live there, so the
machine's own networking is never touched. tests/guest and tests/day2 each
make one per module (or package); each guest gets its own overlay and seed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt

from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from .guest import GuestImage, NatNetwork, nat_network, stage_image
from .hosts import Host, Testbed
from .stack import Stack, domain_type_args, running_stack


@dataclass
class GuestHost:
    """The Testbed host, a connection to its libvirtd, its NAT network, and a folder QEMU reads."""

    host: Host
    conn: libvirt.virConnect
    network: NatNetwork
    folder: Path
    base: Path


@contextlib.contextmanager
def guest_testbed(guest_image: GuestImage) -> Iterator[GuestHost]:
    """A Testbed host with a NAT network and the staged image, all removed when the block ends."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # failures reach the tests as exceptions
    folder = Path(tempfile.mkdtemp(prefix="vapor-guest-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        base = stage_image(guest_image, folder / "images")
        with Testbed(1) as testbed:
            host = testbed.hosts[0]
            conn = host.connect()
            try:
                with nat_network(conn) as network:
                    yield GuestHost(host, conn, network, folder, base)
            finally:
                conn.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def guest_stack(control_plane: ControlPlane, kubectl: Kubectl, guest_host: GuestHost) -> Iterator[Stack]:
    """The whole stack with its agent on the Testbed host's libvirtd (whose NAT network guests use)."""
    agent_args = (*domain_type_args(), *guest_host.host.agent_args())
    with running_stack(control_plane, kubectl, guest_host.host.uri, agent_args=agent_args) as stack:
        yield stack
