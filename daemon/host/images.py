"""The disk images the agent makes with qemu-img: size-disks, overlays on Images, empty copy targets.

:func:`ensure_disks` is what a VM needs before its domain is defined (and
what the target of a migration with ``copyStorage`` needs before libvirt
copies into it): an image for every disk with a ``size`` (qcow2, under
``<storage-dir>/<vm uid>/``), a copy-on-write qcow2 overlay for every disk
with an ``image`` (its backing file the cached Image, grown to ``size`` when
given; made in milliseconds whatever the image's size), and every ``path``
disk already there. A CD-ROM is its file as it is: nothing is made for it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Mapping
from pathlib import Path

from vapor.model import VirtualMachine, quantity_bytes

from .domain import QCOW2_MAGIC, created_disk_path
from .imagecache import CachedImage

log = logging.getLogger("vapor.agent.images")

FORMAT = "qcow2"


class DiskMissing(Exception):
    """A ``path`` disk is not on this host (the agent cannot make it: its size is unknown)."""


class ImageFailed(Exception):
    """qemu-img could not make an image."""


class DiskTooSmall(Exception):
    """An image disk's ``size`` is below its Image's virtual size (an overlay cannot shrink a disk)."""


async def _qemu_img_create(path: Path, *args: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)  # QEMU runs as its own user: it must be able to reach the image
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "create", "-q", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise ImageFailed(f"qemu-img failed: {out.decode().strip()}")


async def create_image(path: Path, size: int, fmt: str = FORMAT) -> None:
    """An empty image of ``size`` bytes at ``path``; its folder is made reachable by QEMU's user (0711)."""
    await _qemu_img_create(path, "-f", fmt, str(path), str(size))


async def create_overlay(path: Path, backing: CachedImage, size: int | None = None) -> None:
    """A qcow2 overlay at ``path`` on the cached image ``backing`` (its virtual size, or ``size``)."""
    if size is not None and size < backing.virtual_size:
        raise DiskTooSmall(
            f"size {size} is below the image's virtual size {backing.virtual_size}; give at least that, or no size"
        )
    grow = [str(size)] if size is not None and size > backing.virtual_size else []
    await _qemu_img_create(path, "-f", FORMAT, "-b", str(backing.path), "-F", backing.format, str(path), *grow)


def virtual_size(path: Path) -> int | None:
    """The size the guest sees of a qcow2 image, from its header (None for another format or no file)."""
    try:
        with path.open("rb") as f:
            header = f.read(32)
    except OSError:
        return None
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        return None
    return int(struct.unpack(">Q", header[24:32])[0])


async def grow_image(path: Path, size: int) -> None:
    """Grow the qcow2 image at ``path`` (of no running domain) to ``size`` bytes; ImageFailed when qemu-img fails."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "resize", "-q", "-f", FORMAT, str(path), str(size),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ImageFailed(f"qemu-img resize failed: {out.decode().strip()}")


def backing_file(path: Path) -> Path | None:
    """The backing file a qcow2 image names in its header (None for none, or for another format)."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
            if len(header) < 20 or header[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size or size > 4096:
                return None
            f.seek(offset)
            name = f.read(size).decode(errors="replace")
    except OSError:
        return None
    return (path.parent / name).resolve() if not name.startswith("/") else Path(name)


def disks_in_use(disks_dir: Path) -> set[Path]:
    """The backing files of every overlay the agent made for a VM of this host (``<disks-dir>/<uid>/*``)."""
    used: set[Path] = set()
    if not disks_dir.exists():
        return used
    for folder in disks_dir.iterdir():
        if folder.is_dir():
            for disk in folder.glob("*.qcow2"):
                if (backing := backing_file(disk)) is not None:
                    used.add(backing)
    return used


async def ensure_disks(
    vm: VirtualMachine, disks_dir: Path, images: Mapping[str, CachedImage] | None = None
) -> list[Path]:
    """Every disk of ``vm`` on this host: the images it made (none when all were there).

    ``images``: the cached Image of each image disk, by disk name. DiskMissing,
    DiskTooSmall or ImageFailed (their message names the disk) when one cannot be.
    """
    made: list[Path] = []
    if vm.spec.firmware == "uefi":  # libvirt writes the VM's NVRAM there (domain.nvram_path)
        folder = disks_dir / (vm.metadata.uid or "")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o711)
    for disk in vm.spec.disks or []:
        if disk.image is not None:
            if not disk.cdrom and (path := await _ensure_overlay(vm, disk.name, disks_dir, images)) is not None:
                made.append(path)
            continue
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


async def _ensure_overlay(
    vm: VirtualMachine, name: str, disks_dir: Path, images: Mapping[str, CachedImage] | None
) -> Path | None:
    disk = next(d for d in vm.spec.disks or [] if d.name == name)
    path = created_disk_path(disks_dir, vm.metadata.uid or "", disk)
    if path.exists():
        return None
    cached = (images or {}).get(name)
    if cached is None:
        raise DiskMissing(f"disk {name}: Image {disk.image} is not cached on this host")
    try:
        await create_overlay(path, cached, quantity_bytes(disk.size) if disk.size is not None else None)
    except (ImageFailed, DiskTooSmall) as exc:
        raise type(exc)(f"disk {name}: {exc}") from None
    log.info("created overlay", extra={"vm": f"{vm.metadata.namespace}/{vm.name}", "path": str(path)})
    return path
