"""Images: the operator's finalizer, summary, fetch requests and InUse condition (decided in :mod:`vapor.rules.images`).

Every Image gets the finalizer ``vapor.io/image-in-use``. The operator keeps
its own status fields (phase, readyHosts, size, virtualSize, sha256 from the
agents' entries; fetchHosts: the hosts of the VMs using it and the targets of
their migrations; the InUse condition naming those VMs) with server-side
apply under its field manager, so the agents' entries stay theirs. A deleted
Image keeps its finalizer while VMs use it (InUse True names them, with a
Warning Event) and loses it when the last of them is gone; the agents drop
their cached copies on their own.

:func:`sync` is called on every change of an Image, of a VM using images and
of a Migration of such a VM, and by placement and the migration checks right
after they decide, so ``fetchHosts`` follows placements at once.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vapor.kube import Conflict, NotFound
from vapor.model import GROUP, VERSION, Condition, Image, ImageStatus, MetadataPatch, Migration, VirtualMachine
from vapor.model.image import images_of, used_by
from vapor.model.names import IMAGE_FINALIZER, ConditionType
from vapor.rules import images as image_rules

from ._state import Memo
from .ledger import Ledger
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.images")
CONTROLLER = "operator"


def owned_status(image: Image) -> ImageStatus:
    """The status fields the operator owns, as they are now (server-side apply wants all of them every time)."""
    s = image.status or ImageStatus()
    in_use = image.condition(ConditionType.IN_USE)
    return ImageStatus(
        phase=s.phase,
        ready_hosts=s.ready_hosts,
        size=s.size,
        virtual_size=s.virtual_size,
        sha256=s.sha256,
        fetch_hosts=s.fetch_hosts or None,
        conditions=[in_use] if in_use else None,
    )


def wanted_status(image: Image, using: list[VirtualMachine], fetch: list[str]) -> ImageStatus:
    """The operator's status fields as the facts say they should be."""
    wanted = image_rules.summary(image)
    wanted.fetch_hosts = fetch or None
    use = image_rules.in_use(image, using)
    wanted.conditions = [
        image.condition_after(ConditionType.IN_USE, "True" if use.status else "False", use.reason, use.message)
    ]
    return wanted


async def sync(ledger: Ledger, image: Image) -> Image:
    """Bring the operator's part of ``image`` up to date (finalizer, status, release on deletion); idempotent."""
    async with ledger.lock:
        try:
            return await _sync(ledger, image)
        except (NotFound, Conflict) as exc:  # changed or gone meanwhile: its next event decides again
            log.info("image=%s: changed while deciding: %s", image.name, exc)
            return image


async def sync_named(ledger: Ledger, names: list[str]) -> None:
    """:func:`sync` the Images of these names that exist."""
    for name in names:
        image = ledger.image(name)
        if image is not None:
            await sync(ledger, image)


async def _sync(ledger: Ledger, image: Image) -> Image:
    images = ledger.kube.resources(Image)
    deleting = image.metadata.deletion_timestamp is not None
    finalizers = list(image.metadata.finalizers or [])
    if not deleting and IMAGE_FINALIZER not in finalizers:
        image = await images.patch(
            image.name,
            metadata=MetadataPatch(
                finalizers=[*finalizers, IMAGE_FINALIZER], resource_version=image.metadata.resource_version
            ),
            field_manager=FIELD_MANAGER,
        )
        ledger.wrote(image)
    using = used_by(image.name, ledger.vms())
    fetch = image_rules.fetch_hosts(image.name, ledger.vms(), ledger.migrations())
    current, wanted = owned_status(image), wanted_status(image, using, fetch)
    if wanted.to_apply() != current.to_apply():
        before_phase, before_use = image.phase, image.condition(ConditionType.IN_USE)
        image = await images.apply_status(image.name, wanted, field_manager=FIELD_MANAGER)
        ledger.wrote(image)
        await _tell(ledger, image, before_phase, before_use)
    if deleting and not using and IMAGE_FINALIZER in finalizers:
        image = await images.patch(
            image.name,
            metadata=MetadataPatch(
                finalizers=[f for f in finalizers if f != IMAGE_FINALIZER],
                resource_version=image.metadata.resource_version,
            ),
            field_manager=FIELD_MANAGER,
        )
        log.info("image=%s: no VM uses it any more; finalizer removed", image.name)
    return image


async def _tell(ledger: Ledger, image: Image, before_phase: str | None, before_use: Condition | None) -> None:
    """Events for what changed: a deletion that waits for VMs, an image turning Ready or Failed."""
    use = image.condition(ConditionType.IN_USE)
    events = ledger.kube.events
    if use is not None and use.reason == "DeletionWaits" and not use.says_same_as(before_use):
        log.info("image=%s: %s", image.name, use.message)
        await events.record(
            image, reason="DeletionWaits", note=use.message, controller=CONTROLLER, action="Delete", type="Warning"
        )
    if image.phase == before_phase:
        return
    if image.phase == "Ready":
        hosts = ", ".join(image.ready_on())
        await events.record(
            image, reason="ImageReady", note=f"Verified copy on {hosts}", controller=CONTROLLER, action="Fetch"
        )
    elif image.phase == "Failed":
        why = image_rules.failure(image) or "every host that tried failed"
        await events.record(
            image, reason="ImageFailed", note=f"No host could use the image: {why}", controller=CONTROLLER,
            action="Fetch", type="Warning",
        )  # fmt: skip


# -- kopf ------------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "images")
async def image_changed(type: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """Act on every change of an Image (its creation, the agents' entries, its deletion)."""
    if type != "DELETED":
        await sync(memo.books, Image.from_api(dict(body)))


def _uses_images(spec: kopf.Spec, **_: Any) -> bool:
    return any(d.get("image") for d in spec.get("disks") or [])


@kopf.on.event(GROUP, VERSION, "virtualmachines", when=_uses_images)
async def vm_changed_for_images(type: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A VM using images was placed, moved or deleted: its Images' fetchHosts and InUse follow."""
    vm = VirtualMachine.from_api(dict(body))
    await memo.books.seen(vm, gone=type == "DELETED")  # decide on a ledger that knows this change
    await sync_named(memo.books, images_of(vm))


@kopf.on.event(GROUP, VERSION, "migrations")
async def migration_changed_for_images(body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A migration of a VM using images named or dropped its target: the Images' fetchHosts follow."""
    ledger = memo.books
    vm = ledger.vm_of(Migration.from_api(dict(body)))
    if vm is not None:
        await sync_named(ledger, images_of(vm))
