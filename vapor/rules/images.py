"""Decisions about Images, without I/O: the summary of the hosts' copies, who uses an image, where to fetch it.

The operator's kopf side (:mod:`vapor.operator.images`) takes the facts from the ledger and calls
these functions; tests call them directly. The agents write one entry per
host in ``status.hosts``; the operator writes the summary (phase,
readyHosts, size, virtualSize, sha256), ``fetchHosts`` and the InUse
condition, all computed here from resources only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vapor.model import ConditionStatus, Image, ImageStatus, Migration, VirtualMachine
from vapor.model.image import ImageHostStatus, images_of, named, used_by

# The reason of a migration's ImageReady pre-flight while its target fetches the images: it waits, not fails.
IMAGE_FETCHING = "ImageFetching"


def summary(image: Image) -> ImageStatus:
    """phase, readyHosts, size, virtualSize and sha256 from the hosts' entries.

    Ready as soon as one host holds a verified copy; Failed when no copy is
    Ready or coming and every host that tried failed on the content (its
    entry Failed: checksum or format mismatch, a URL that is refused); a
    host that Refused (no room, a path outside its folders) tried nothing.
    Pending otherwise; Terminating once deleted.
    """
    hosts = (image.status.hosts or []) if image.status else []
    ready = [h for h in hosts if h.phase == "Ready"]
    tried = [h for h in hosts if h.phase != "Refused"]
    if image.metadata.deletion_timestamp is not None:
        phase = "Terminating"
    elif ready:
        phase = "Ready"
    elif tried and all(h.phase == "Failed" for h in tried):
        phase = "Failed"
    else:
        phase = "Pending"
    status = ImageStatus(phase=phase, ready_hosts=len(ready))
    verified = _first_verified(ready)
    if verified is not None:
        size = verified.total_bytes if verified.total_bytes is not None else verified.bytes
        if size is not None:
            status.size = size
        if verified.virtual_size is not None:
            status.virtual_size = verified.virtual_size
        if verified.sha256 is not None:
            status.sha256 = verified.sha256
    return status


def _first_verified(ready: list[ImageHostStatus]) -> ImageHostStatus | None:
    """The Ready entry that says the most (sha256 first), by host name for a stable answer."""
    return min(ready, key=lambda h: (h.sha256 is None, h.virtual_size is None, h.host), default=None)


def failure(image: Image) -> str | None:
    """Why a Failed image failed, host by host (for messages), or None."""
    hosts = (image.status.hosts or []) if image.status else []
    failed = [h for h in hosts if h.phase == "Failed"]
    if not failed:
        return None
    return "; ".join(f"{h.host}: {h.reason or 'Failed'}" + (f" ({h.message})" if h.message else "") for h in failed)


@dataclass(frozen=True)
class InUse:
    """The InUse condition of an Image: status, reason and message."""

    status: bool
    reason: str
    message: str


def in_use(image: Image, using: list[VirtualMachine]) -> InUse:
    """Whether VMs use the image, naming them; on a deleted image, that its deletion waits for them."""
    if not using:
        return InUse(False, "NotInUse", "no VirtualMachine uses this image")
    count = f"{len(using)} VirtualMachine{'s' if len(using) > 1 else ''}"
    if image.metadata.deletion_timestamp is not None:
        return InUse(True, "DeletionWaits", f"deletion waits until {count} no longer use it: {named(using)}")
    return InUse(True, "InUse", f"used by {count}: {named(using)}")


def fetch_hosts(name: str, vms: Iterable[VirtualMachine], migrations: Iterable[Migration]) -> list[str]:
    """Where the Image ``name`` is needed: the hosts of the VMs using it and the targets of their migrations.

    A migration counts from the moment the operator names its target (its
    ImageReady pre-flight, in phase Pending) until it ends.
    """
    using = {(vm.metadata.namespace or "", vm.name): vm for vm in used_by(name, vms)}
    wanted = {vm.host for vm in using.values() if vm.host}
    for m in migrations:
        moving = (m.metadata.namespace or "", m.spec.vm_name) in using
        if moving and m.target_host and not m.is_terminal:
            wanted.add(m.target_host)
    return sorted(wanted)


def progress(image: Image, host: str) -> str:
    """How far ``host``'s copy of the image is, for a person: "Fetching 42% on node-2" or "no copy yet"."""
    entry = image.on_host(host)
    if entry is None:
        return f"image {image.name}: {host} has not started fetching it"
    percent = f" {entry.percent}%" if entry.percent is not None and entry.phase == "Fetching" else ""
    why = f" ({entry.reason}: {entry.message})" if entry.reason and entry.message else ""
    return f"image {image.name}: {entry.phase}{percent} on {host}{why}"


def on_target(vm: VirtualMachine, host: str, images: Mapping[str, Image]) -> tuple[ConditionStatus, str, str]:
    """The ImageReady pre-flight of a migration of ``vm`` to ``host``: status, reason and message.

    True when ``host`` holds a verified copy of every image the VM's disks use;
    False with reason ImageFetching (and each copy's progress) while it fetches
    them, the one reason that waits rather than refuses; False with another
    reason (ImageNotFound, ImageFailed, NotUploaded) when it never will.
    """
    coming: list[str] = []
    for name in images_of(vm):
        image = images.get(name)
        if image is None:
            return "False", "ImageNotFound", f"image {name} does not exist"
        entry = image.on_host(host)
        if entry is not None and entry.phase == "Ready":
            continue
        if entry is not None and entry.phase in ("Failed", "Refused"):
            why = f"{entry.reason or entry.phase}" + (f": {entry.message}" if entry.message else "")
            return "False", "ImageFailed", f"image {name} cannot be used on {host} ({why})"
        if image.spec.source.upload is not None:
            return "False", "NotUploaded", f"upload image {name} is not on {host}: upload it there first"
        coming.append(progress(image, host))
    if coming:
        return "False", IMAGE_FETCHING, "; ".join(coming)
    return "True", "ImagesReady", f"{host} holds every image the VM's disks use"
