"""The disks and Images a VM needs, as the VM controller sees them: made, cached, being fetched, or unusable.

A VM whose disks name Images waits (phase Pending, condition ImageReady
False with reason ImageFetching and the progress in its message) until this
host's cache holds every one of them; an Image this host cannot hold (a
checksum or format mismatch, a refused source) fails the VM with the Image's
own reason. The ImageReady condition is the agent's on every VM with image
disks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vapor.model import VirtualMachine, VirtualMachineStatus, names

from .._config import AgentConfig
from ..host.diskpaths import DiskPathRefused, DiskSource, allowed_sources
from ..host.imagecache import CachedImage
from ..host.images import DiskMissing, DiskTooSmall, ImageFailed, ensure_disks
from . import vmstatus
from .vmstatus import Other, VMError

if TYPE_CHECKING:
    from .images import ImageController

IMAGES_READY: Other = (
    names.ConditionType.IMAGE_READY,
    "True",
    "ImagesCached",
    "Every Image of the VM's disks is cached on this host.",
)


class ImageWait(Exception):
    """An Image of the VM is not on this host yet (or not usable: ``failed``); ``reason`` and ``message`` say why."""

    def __init__(self, reason: str, message: str, *, failed: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.failed = failed

    @property
    def condition(self) -> Other:
        """The ImageReady condition it makes."""
        return names.ConditionType.IMAGE_READY, "False", self.reason, self.message

    def failure(self) -> VMError:
        """The VM's failure, for an Image that cannot be used here."""
        return VMError(self.reason, self.message, condition=self.condition)


def waiting_status(vm: VirtualMachine, wait: ImageWait, restart_done: str | None) -> VirtualMachineStatus:
    """The status of a VM waiting for an Image: Pending, Ready and ImageReady False with the progress."""
    return vmstatus.build(
        vm,
        phase="Pending",
        ready=("False", wait.reason, wait.message),
        restart_done=restart_done,
        others=[wait.condition],
    )


def uses_images(vm: VirtualMachine) -> bool:
    """Whether a disk of ``vm`` names an Image."""
    return any(d.image for d in vm.spec.disks or [])


def image_ready_of(vm: VirtualMachine) -> list[Other]:
    """ImageReady of a VM whose domain is defined: True when it has image disks, else no condition."""
    return [IMAGES_READY] if uses_images(vm) else []


async def images_for(vm: VirtualMachine, images: ImageController | None) -> dict[str, CachedImage]:
    """The cached Image of each image disk of ``vm``, by disk name; ImageWait for the first that is not there."""
    found: dict[str, CachedImage] = {}
    for disk in vm.spec.disks or []:
        if disk.image is None:
            continue
        if images is None:
            raise ImageWait("ImagesUnavailable", "this agent does not fetch Images", failed=True)
        state = await images.state_for_vm(disk.image)
        if state.cached is None:
            raise ImageWait(state.reason, f"disk {disk.name}: {state.message}", failed=state.failed)
        if disk.cdrom and state.cached.format == "qcow2":
            raise ImageWait("FormatMismatch", f"disk {disk.name}: a CD-ROM needs an iso or raw Image", failed=True)
        found[disk.name] = state.cached
    return found


async def disks_for(
    config: AgentConfig,
    vm: VirtualMachine,
    images: ImageController | None,
    copy: Callable[[VirtualMachine, dict[str, CachedImage]], Awaitable[None]],
) -> tuple[dict[str, DiskSource], dict[str, CachedImage]]:
    """Every disk of ``vm`` ready on this host, before its domain is defined: its path disks' sources, its Images.

    The path disks are checked before anything is made or handed to libvirt;
    then a clone's disks are copied (``copy``), then the disks the agent makes
    are made. VMError (or ImageWait) says why not.
    """
    try:
        sources = allowed_sources(config, vm)
        cached = await images_for(vm, images)
        await copy(vm, cached)  # a clone's disks first, copied from its source
        await ensure_disks(vm, config.disks_dir, cached)
    except DiskPathRefused as exc:
        raise VMError(exc.reason, exc.message) from None
    except DiskMissing as exc:
        raise VMError("DiskMissing", str(exc)) from None
    except DiskTooSmall as exc:
        raise VMError("DiskTooSmall", str(exc)) from None
    except ImageFailed as exc:
        raise VMError("DiskCreateFailed", str(exc)) from None
    return sources, cached
