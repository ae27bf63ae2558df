"""A VM's spec changed: the running domain takes what it can live, the rest waits for its next start.

After the agent has (re)defined a domain from the spec, :class:`Changes`
brings a running instance to the new definition by the live changes of
:mod:`..host.livechange`, once per definition (its spec hash, kept in the
instance's metadata), with an Event naming what changed and a Warning one
naming what failed. A domain that is off needs no live change; only its
disks grow (``qemu-img resize``) before it starts.

What the running instance still lacks is the VM's ``status.pendingChanges``
(spec fields, ``cloudInit`` among them when the guest booted another
cloud-init seed) and the one ``RestartRequired`` condition, True while any
is pending, its message naming them and why a live change failed. Both
clear when the domain next starts: it boots the definition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube
from vapor.model import VirtualMachine, quantity_bytes
from vapor.model.names import ConditionType

from ..host import livechange
from ..host.domain import METADATA_NS, VaporMetadata, created_disk_path
from ..host.images import ImageFailed, grow_image, virtual_size
from ..host.libvirt import Libvirt
from .vmstatus import Other, VMError

log = logging.getLogger("vapor.agent.vmchanges")

CONTROLLER = "agent"
PENDING = "ChangesPending"
CURRENT = "DefinitionCurrent"
CLOUD_INIT = "cloudInit"


@dataclass(frozen=True)
class Pending:
    """What the running instance lacks of its definition: spec fields, and why a live change of some failed."""

    fields: list[str]
    failed: dict[str, str]


NOTHING = Pending([], {})


def _sized_disks(vm: VirtualMachine, disks_dir: Path) -> dict[str, tuple[Path, int]]:
    """The disks the agent made with a size (blank, or an overlay grown): their file and the size asked."""
    uid = vm.metadata.uid or ""
    return {
        d.name: (created_disk_path(disks_dir, uid, d), quantity_bytes(d.size))
        for d in vm.spec.disks or []
        if d.size is not None and not d.cdrom
    }


class Changes:
    """Brings the running domains of this node to their definitions, and says what waits for a restart."""

    def __init__(self, kube: Kube, conn: Libvirt, disks_dir: Path) -> None:
        self.kube = kube
        self.libvirt = conn
        self.disks_dir = disks_dir

    async def bring(self, vm: VirtualMachine, dom: libvirt.virDomain, active: bool) -> None:
        """Make the running instance what its definition says, as far as it can be live; grow an off domain's disks."""
        if not active:
            await self._grow_offline(vm)
            return
        wanted = await self.definition_hash(dom)
        state = await livechange.read_state(self.libvirt, dom)
        if wanted is None or state.applied == wanted:
            return  # this definition was brought in before: what is left waits for a restart
        changes = await self._differences(vm, dom, state)
        done = await livechange.apply(self.libvirt, dom, changes, state)
        left = {c.field for c in await self._differences(vm, dom, state)}
        for change in done:
            if change.field in left:  # libvirt asked; the guest has not let the device go
                state.failed[change.field] = "the guest has not released it; it goes at the next start"
        state.applied = wanted
        await livechange.write_state(self.libvirt, dom, state)
        made = [c.what or c.field for c in done if c.field not in left]
        if made:
            await self._event(vm, "LiveChanged", "Changed the running domain: " + ", ".join(made) + ".", "Normal")
        failed = {f: why for f, why in state.failed.items() if f in left}
        if failed:
            note = "Could not change the running domain (it runs as it was): " + _reasons(failed)
            await self._event(vm, "LiveChangeFailed", note, "Warning")

    async def pending(self, vm: VirtualMachine, dom: libvirt.virDomain, active: bool) -> Pending:
        """What the running instance lacks of its definition (nothing for a domain that is off)."""
        if not active:
            return NOTHING
        state = await livechange.read_state(self.libvirt, dom)
        fields = [c.field for c in await self._differences(vm, dom, state)]
        return Pending(fields, {f: why for f, why in state.failed.items() if f in fields})

    async def card_macs(self, dom: libvirt.virDomain) -> dict[str, str]:
        """The MAC addresses of the domain's defined cards, by name: a redefinition keeps them."""
        return livechange.card_macs(await self.libvirt.call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE))

    async def definition_hash(self, dom: libvirt.virDomain) -> str | None:
        """The spec hash of the domain's persistent definition (a running instance's own may be older).

        A transient domain (one a migration brought with persistent false) has no
        persistent definition: its running instance is its definition, and defining
        one would make it persistent against the Migration's wish.
        """
        try:
            persistent = await self.libvirt.call(dom.isPersistent)
            which = libvirt.VIR_DOMAIN_AFFECT_CONFIG if persistent else libvirt.VIR_DOMAIN_AFFECT_LIVE
            text = await self.libvirt.call(dom.metadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, which)
        except libvirt.libvirtError:
            return None
        meta = VaporMetadata.from_xml(text)
        return meta.spec_hash if meta is not None else None

    async def _differences(
        self, vm: VirtualMachine, dom: libvirt.virDomain, state: livechange.LiveState
    ) -> list[livechange.Change]:
        live = await self.libvirt.call(dom.XMLDesc, 0)
        wanted = await self.libvirt.call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
        targets = livechange.disk_targets(live)
        sizes: dict[str, tuple[int, int]] = {}
        for name, (_, asked) in _sized_disks(vm, self.disks_dir).items():
            if name in targets:
                capacity, _, _ = await self.libvirt.call(dom.blockInfo, targets[name])
                sizes[name] = (int(capacity), asked)
        return livechange.differences(live, wanted, state, sizes)

    async def _grow_offline(self, vm: VirtualMachine) -> None:
        for name, (path, asked) in _sized_disks(vm, self.disks_dir).items():
            size = virtual_size(path)
            if size is not None and asked > size:
                try:
                    await grow_image(path, asked)
                except ImageFailed as exc:
                    raise VMError("DiskResizeFailed", f"disk {name}: {exc}") from None
                await self._event(vm, "DiskGrown", f"Grew disk {name} to {asked} bytes.", "Normal")

    async def _event(self, vm: VirtualMachine, reason: str, note: str, kind: str) -> None:
        log.info(note, extra={"vm": f"{vm.metadata.namespace}/{vm.name}", "reason": reason})
        await self.kube.events.record(
            vm, reason=reason, note=note[:1000], controller=CONTROLLER, action="Change",
            type="Warning" if kind == "Warning" else "Normal",
        )  # fmt: skip


def _reasons(failed: dict[str, str]) -> str:
    return "; ".join(f"{field}: {why}" for field, why in failed.items())


def restart_condition(seed: Other | None, pending: Pending) -> tuple[list[str], Other]:
    """The pending fields (cloudInit among them when the seed changed) and the one RestartRequired condition."""
    fields = list(pending.fields)
    if seed is not None and seed[1] == "True":
        fields.append(CLOUD_INIT)
    if fields == [CLOUD_INIT] and seed is not None:
        return fields, seed
    if fields:
        message = "these changes take effect at the next start: " + ", ".join(fields)
        if pending.failed:
            message += "; the live change failed for " + _reasons(pending.failed)
        return fields, (ConditionType.RESTART_REQUIRED, "True", PENDING, message)
    if seed is not None:
        return fields, seed
    return fields, (ConditionType.RESTART_REQUIRED, "False", CURRENT, "Nothing of the spec waits for a restart.")
