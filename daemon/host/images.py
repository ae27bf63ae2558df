"""The disk images the agent makes with qemu-img: a VM's size-disks, and the empty ones a storage copy fills.

:func:`ensure_disks` is what a VM needs before its domain is defined (and
what the target of a migration with ``copyStorage`` needs before libvirt
copies into it): an image for every disk with a ``size`` (qcow2, under
``<storage-dir>/<vm uid>/``), and every ``path`` disk already there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from vapor.model import VirtualMachine, quantity_bytes

from .domain import created_disk_path

log = logging.getLogger("vapor.agent.images")

FORMAT = "qcow2"


class DiskMissing(Exception):
    """A ``path`` disk is not on this host (the agent cannot make it: its size is unknown)."""


class ImageFailed(Exception):
    """qemu-img could not make an image."""


async def create_image(path: Path, size: int, fmt: str = FORMAT) -> None:
    """An empty image of ``size`` bytes at ``path``; its folder is made reachable by QEMU's user (0711)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)  # QEMU runs as its own user: it must be able to reach the image
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "create", "-q", "-f", fmt, str(path), str(size),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ImageFailed(f"qemu-img failed: {out.decode().strip()}")


async def ensure_disks(vm: VirtualMachine, disks_dir: Path) -> list[Path]:
    """Every disk of ``vm`` on this host: the images it made (none when all were there).

    DiskMissing or ImageFailed (their message names the disk) when one cannot be.
    """
    made: list[Path] = []
    for disk in vm.spec.disks or []:
        if disk.size is None:
            if not Path(disk.path or "").exists():
                raise DiskMissing(f"disk {disk.name}: {disk.path} does not exist on this host")
            continue
        path = created_disk_path(disks_dir, vm.metadata.uid or "", disk)
        if path.exists():
            continue
        try:
            await create_image(path, quantity_bytes(disk.size))
        except ImageFailed as exc:
            raise ImageFailed(f"disk {disk.name}: {exc}") from None
        log.info("created disk", extra={"vm": f"{vm.metadata.namespace}/{vm.name}", "path": str(path)})
        made.append(path)
    return made
