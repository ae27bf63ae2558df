"""The Debian test guest started by direct libvirt calls (overlay + seed) until SSH answers: the baseline.

Vapor's own figure (POST /vms with the image cached, to SSH answering) is
compared against ``boot_to_ssh``, run on the same kind of host, with the same
image, disk and seed; ``main`` prints the baseline alone.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt

from tests.support.guest import (
    BOOT_TIMEOUT,
    GuestImage,
    NatNetwork,
    SshKey,
    boot_guest,
    guest_image,
    make_ssh_key,
    nat_network,
    stage_image,
)
from tests.support.guest import wait_for_ssh as ssh_answers
from tests.support.hosts import Host, Testbed

ROUNDS = 3


def boot_to_ssh(
    conn: libvirt.virConnect, base: Path, folder: Path, network: NatNetwork, key: SshKey, netns: str, rounds: int
) -> list[float]:
    """Seconds from the overlay's creation to SSH answering as ``debian``, one fresh guest per round."""
    times = []
    for i in range(rounds):
        hostname = f"bench-{i}-{uuid.uuid4().hex[:4]}"
        start = time.monotonic()
        guest = boot_guest(conn, base, folder / hostname, network, key, hostname)
        try:
            address = guest.wait_for_address(BOOT_TIMEOUT)
            ssh_answers(address, key, netns=netns, timeout=BOOT_TIMEOUT)
            times.append(time.monotonic() - start)
        finally:
            guest.destroy()
    return times


@dataclass
class BenchHost:
    """A Testbed host with a NAT network, the staged image, a key, and a folder for the guests' files."""

    host: Host
    conn: libvirt.virConnect
    network: NatNetwork
    base: Path
    key: SshKey
    folder: Path

    def baseline(self, rounds: int) -> list[float]:
        """:func:`boot_to_ssh` on this host."""
        return boot_to_ssh(self.conn, self.base, self.folder, self.network, self.key, self.host.netns, rounds)


@contextlib.contextmanager
def bench_host(image: GuestImage, prefix: str) -> Iterator[BenchHost]:
    """One Testbed host ready for guests; everything removed afterwards."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        base = stage_image(image, folder / "images")
        key = make_ssh_key(folder / "ssh")
        with Testbed(1) as testbed:
            host = testbed.hosts[0]
            conn = host.connect()
            try:
                with nat_network(conn) as network:
                    yield BenchHost(host, conn, network, base, key, folder)
            finally:
                conn.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Print the baseline: median and spread of boot-to-SSH over ``ROUNDS`` guests on a Testbed host."""
    image = guest_image()
    with bench_host(image, "vapor-bench-guest-") as bench:
        times = bench.baseline(ROUNDS)
    size, virtual = image.size / 2**20, image.virtual_size / 2**30
    print(f"  image {image.path.name}: {size:.0f} MiB qcow2, {virtual:.1f} GiB virtual")
    print(f"  guest by direct libvirt calls (overlay + seed) to SSH answering, {ROUNDS} rounds:")
    print(f"  median {statistics.median(times):6.2f} s   (min {min(times):.2f} s, max {max(times):.2f} s)")
