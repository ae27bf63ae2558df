"""Which host files and devices a VM disk's ``path`` may name on this node.

A ``path`` disk hands a host file or device to QEMU, and libvirt makes it
QEMU's (it changes its owner) before the guest writes to it: ``/etc/shadow``
or ``/dev/sda`` must never get there. The API server's rules refuse what can
be told from the text alone (see ``disk_path_problem`` in the model); here
the agent decides with the node's own files, after symlinks:

- a regular file must be inside one of the image folders (``--image-dir``;
  by default ``<state-dir>/images`` and ``/var/lib/libvirt/images``), and not
  an image the agent made for a VM (``<state-dir>/disks``);
- a block device must be one the node's admin lists (``--block-device``,
  chart ``agent.blockDevices``), compared after symlinks, so
  ``/dev/disk/by-id/...`` names work;
- anything else (a folder, a character device, a pipe) is refused.

The domain is given the resolved path, so a symlink changed afterwards in
an image folder does not move the disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vapor.model import VirtualMachine
from vapor.model.virtualmachine import disk_path_problem

from .._config import AgentConfig

REFUSED = "DiskPathRefused"
MISSING = "DiskMissing"


class DiskPathRefused(Exception):
    """The path may not be a VM disk here; ``reason`` is DiskPathRefused or DiskMissing."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class DiskSource:
    """What a path disk is on this node: its resolved path, and whether it is a block device."""

    path: str
    block: bool


def _inside(real: str, folder: Path) -> bool:
    top = os.path.realpath(folder).rstrip("/")
    return real.startswith(top + "/")


def resolve_disk_path(
    path: str, *, image_dirs: Iterable[Path], block_devices: Iterable[str], disks_dir: Path
) -> DiskSource:
    """The disk ``path`` names, when this node allows it; DiskPathRefused otherwise."""
    problem = disk_path_problem(path)
    if problem is not None:
        raise DiskPathRefused(REFUSED, f"{path}: {problem}")
    real = os.path.realpath(path)
    try:
        mode: int | None = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise DiskPathRefused(REFUSED, f"{path} cannot be examined: {exc.strerror}") from None
    if mode is not None and stat.S_ISBLK(mode):
        if real in {os.path.realpath(device) for device in block_devices}:
            return DiskSource(real, True)
        raise DiskPathRefused(
            REFUSED,
            f"{path} is a block device ({real}) that this host's admin has not allowed for VMs "
            "(agent flag --block-device, chart value agent.blockDevices)",
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise DiskPathRefused(REFUSED, f"{path} is neither an image file nor a block device")
    if _inside(real, disks_dir):
        raise DiskPathRefused(REFUSED, f"{path} is an image the agent made for a VM; give a VM its own disks")
    folders = list(image_dirs)
    if not any(_inside(real, folder) for folder in folders):
        where = ", ".join(str(f) for f in folders) or "none"
        shown = path if real == path else f"{path} ({real})"
        raise DiskPathRefused(
            REFUSED,
            f"{shown} is not in an image folder of this host ({where}; agent flag --image-dir, "
            "chart value agent.imageDirs)",
        )
    if mode is None:
        raise DiskPathRefused(MISSING, f"{path} does not exist on this host")
    return DiskSource(real, False)


def allowed_sources(config: AgentConfig, vm: VirtualMachine, *, missing_ok: bool = False) -> dict[str, DiskSource]:
    """The sources of ``vm``'s path disks by disk name, when this node allows every one of them.

    DiskPathRefused (its message names the disk) for the first one it does
    not; a missing image is skipped when ``missing_ok``.
    """
    sources: dict[str, DiskSource] = {}
    for disk in vm.spec.disks or []:
        if disk.size is not None or disk.image is not None:
            continue
        try:
            sources[disk.name] = found = resolve_disk_path(
                disk.path or "",
                image_dirs=config.disk_image_dirs,
                block_devices=config.block_devices,
                disks_dir=config.disks_dir,
            )
            if _inside(found.path, config.images_cache_dir):
                raise DiskPathRefused(REFUSED, f"{disk.path} is in the Image cache; name the Image (disks[].image)")
        except DiskPathRefused as exc:
            if not (missing_ok and exc.reason == MISSING):
                raise DiskPathRefused(exc.reason, f"disk {disk.name}: {exc.message}") from None
    return sources
