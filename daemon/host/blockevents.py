"""The kernel's block-device events: a disk or partition added, removed or changed, as it happens.

The kernel announces every device it adds, removes or changes (a loop device
attached, a disk plugged in, a partition table read again) on the netlink
socket family NETLINK_KOBJECT_UEVENT, whether or not udev runs. The agent
listens there so that a new disk is in the Host's status within a moment,
not at the next inventory scan, and a Mount waiting for its disk mounts as
soon as the disk appears. Only the initial network namespace receives these
events: the agent runs on the host's network (the chart's hostNetwork). When
the socket cannot be opened, the periodic scan alone keeps the inventory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("vapor.agent.blockevents")

NETLINK_KOBJECT_UEVENT = 15
KERNEL_EVENTS = 1  # multicast group of the kernel's own events (udev re-sends its own on group 2)
SETTLE_SECONDS = 0.2  # one attach sends a few events: they are answered once
BUFFER = 1 << 16


def is_block_event(message: bytes) -> bool:
    """Whether a uevent message (``action@devpath`` then NUL-separated KEY=value) is about a block device."""
    return b"SUBSYSTEM=block" in message.split(b"\0")


class BlockDeviceEvents:
    """Calls ``on_change`` (on the event loop) after block devices were added, removed or changed."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    @staticmethod
    def _open() -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        except OSError as exc:
            log.warning("cannot follow block-device events; disks are seen at scans", extra={"error": str(exc)})
            return None
        try:
            sock.bind((0, KERNEL_EVENTS))
        except OSError as exc:
            sock.close()
            log.warning("cannot follow block-device events; disks are seen at scans", extra={"error": str(exc)})
            return None
        sock.setblocking(False)
        return sock

    async def run(self) -> None:
        """Follow the events until cancelled."""
        sock = self._open()
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not is_block_event(await loop.sock_recv(sock, BUFFER)):
                    continue
                await asyncio.sleep(SETTLE_SECONDS)
                while True:  # the events that came meanwhile are answered by the same call
                    try:
                        sock.recv(BUFFER)
                    except BlockingIOError:
                        break
                log.debug("block devices changed")
                self.on_change()
        finally:
            sock.close()
