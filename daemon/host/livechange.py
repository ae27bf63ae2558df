"""Changes of a running domain: what its new definition asks that the running instance lacks, and doing it live.

The agent defines the domain from the spec (its persistent definition) and
compares that with the running instance, both read from libvirt as XML:

- memory through the virtio balloon (``setMemoryFlags``), up to the
  ``<memory>`` the instance was started with (spec.maxMemory);
- vCPUs by hot-plug (``setVcpusFlags``), up to the ``<vcpu>`` it was started
  with (spec.maxCpu); taking one away needs the guest's help, and fails
  without it;
- a bigger disk the agent made (a blank qcow2 or an overlay on an Image) by
  ``blockResize``; a disk never shrinks;
- a new disk or network card attached (``attachDeviceFlags``; its file is made
  before the definition), a removed one detached when the guest lets it go.

What cannot change live (the ceilings, the firmware, a disk's bus or file, a
card's model or source, and anything whose live change failed) is a
*pending* change: it names the spec field, and waits for the next start of
the domain, which boots the new definition. Nothing here changes the
persistent definition: it is the spec's already.

The balloon's target is not in the instance's XML (QEMU reports what the
guest gave back, which a guest without a balloon driver never does), so the
agent keeps what it asked for in the instance's own metadata (element
``LIVE_NS``, written live only), with the definition it last brought the
instance to and the live changes that failed. A definition carries the
element with the memory it boots with, so a new start begins from that.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libvirt  # type: ignore[import-untyped]

from .domain import LIVE_NS
from .libvirt import Libvirt

log = logging.getLogger("vapor.agent.livechange")

_DISK = "ua-disk-"
_NET = "ua-net-"
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
Step = Callable[[libvirt.virDomain], object]


@dataclass(frozen=True)
class Change:
    """One difference between the running instance and its definition: the spec field, and how to make it live."""

    field: str
    step: Step | None = None  # None: only a restart makes it
    what: str = ""  # a few words for the Event, when done live
    memory_kib: int | None = None  # the balloon's new target, for a memory change


@dataclass
class LiveState:
    """What the agent did to the running instance (kept in its live metadata)."""

    applied: str | None = None  # spec hash of the definition the instance was last brought to
    memory_kib: int | None = None  # the balloon's target the agent asked for
    failed: dict[str, str] = field(default_factory=dict)  # spec field: why its live change failed

    def to_xml(self) -> str:
        """The metadata element."""
        el = ET.Element("live", {k: str(v) for k, v in (("applied", self.applied), ("memory", self.memory_kib)) if v})
        for name, why in self.failed.items():
            ET.SubElement(el, "failed", {"field": name}).text = why
        return ET.tostring(el, encoding="unicode")

    @classmethod
    def from_xml(cls, text: str | None) -> LiveState:
        """Parse the element (an empty state for none or a broken one)."""
        try:
            el = ET.fromstring(text) if text else None
        except ET.ParseError:
            el = None
        if el is None:
            return cls()
        memory = el.get("memory")
        failed = {f.get("field", ""): f.text or "" for f in el.iterfind("failed")}
        return cls(el.get("applied"), int(memory) if memory and memory.isdigit() else None, failed)


def _int(el: ET.Element | None, default: int = 0) -> int:
    text = el.text if el is not None else None
    return int(text) if text and text.strip().isdigit() else default


def _vcpus(root: ET.Element) -> tuple[int, int]:
    """(online, most) vCPUs of a domain's XML."""
    el = root.find("vcpu")
    most = _int(el, 1)
    current = el.get("current") if el is not None else None
    return (int(current) if current else most), most


def _devices(root: ET.Element, tag: str, prefix: str) -> dict[str, ET.Element]:
    """The devices Vapor named (alias ``<prefix><name>``), by name."""
    found: dict[str, ET.Element] = {}
    for el in root.iterfind(f"devices/{tag}"):
        alias = _attr(el, "alias", "name") or ""
        if alias.startswith(prefix):
            found[alias.removeprefix(prefix)] = el
    return found


def _attr(el: ET.Element, path: str, name: str) -> str | None:
    found = el.find(path)
    return found.get(name) if found is not None else None


def _disk_shape(el: ET.Element) -> dict[str, str | None]:
    """What of a disk cannot change live, by the spec field that sets it."""
    source = el.find("source")
    return {
        "bus": _attr(el, "target", "bus"),
        "path": (source.get("file") or source.get("dev")) if source is not None else None,
        "cdrom": el.get("device"),
        "readOnly": "yes" if el.find("readonly") is not None else None,
        "bootOrder": _attr(el, "boot", "order"),
    }


def _nic_shape(el: ET.Element) -> dict[str, str | None]:
    """What of a network card cannot change live, by the spec field that sets it."""
    source = el.find("source")
    return {
        "type": el.get("type"),
        "source": (source.get("network") or source.get("bridge")) if source is not None else None,
        "model": _attr(el, "model", "type"),
        "mac": (_attr(el, "mac", "address") or "").lower() or None,
    }


def _attach(el: ET.Element) -> Step:
    """Attach the device as the definition has it, but where the running instance has room (libvirt picks)."""
    for address in el.findall("address"):
        el.remove(address)
    xml = ET.tostring(el, encoding="unicode")
    return lambda dom: dom.attachDeviceFlags(xml, _LIVE)


def _detach(xml: str) -> Step:
    return lambda dom: dom.detachDeviceFlags(xml, _LIVE)


def _device_changes(
    live: ET.Element, wanted: ET.Element, tag: str, prefix: str, kind: str, shape: Callable[[ET.Element], Any]
) -> list[Change]:
    changes: list[Change] = []
    running, defined = _devices(live, tag, prefix), _devices(wanted, tag, prefix)
    for name, el in defined.items():
        if name not in running:
            changes.append(Change(f"{kind}[{name}]", _attach(el), f"attached {name}"))
            continue
        now, then = shape(running[name]), shape(el)
        changes += [Change(f"{kind}[{name}].{key}") for key in then if now.get(key) != then[key]]
    for name, el in running.items():
        if name not in defined:
            changes.append(Change(f"{kind}[{name}]", _detach(ET.tostring(el, encoding="unicode")), f"detached {name}"))
    return changes


def differences(
    live_xml: str, wanted_xml: str, state: LiveState, disk_sizes: dict[str, tuple[int, int]]
) -> list[Change]:
    """What the running instance (``live_xml``) lacks of its definition (``wanted_xml``), in spec fields.

    ``state``: what the agent did to the instance before. ``disk_sizes``: the
    disks the agent made, by name: (their size now, the size their spec asks).
    """
    live, wanted = ET.fromstring(live_xml), ET.fromstring(wanted_xml)
    changes: list[Change] = []
    (cpu_now, cpu_most), (cpu, cpu_ceiling) = _vcpus(live), _vcpus(wanted)
    if cpu_ceiling != cpu_most:
        changes.append(Change("maxCpu"))
    if cpu != cpu_now:
        step = (lambda dom: dom.setVcpusFlags(cpu, _LIVE)) if cpu <= cpu_most else None
        changes.append(Change("cpu", step, f"{cpu} vCPUs"))
    memory_most, memory_ceiling = _int(live.find("memory")), _int(wanted.find("memory"))
    if memory_ceiling != memory_most:
        changes.append(Change("maxMemory"))
    memory = _int(wanted.find("currentMemory"), memory_ceiling)
    memory_now = state.memory_kib or _int(live.find("currentMemory"), memory_most)
    if memory != memory_now:
        step = (lambda dom: dom.setMemoryFlags(memory, _LIVE)) if memory <= memory_most else None
        changes.append(Change("memory", step, f"memory {memory} KiB", memory))
    if _attr(live, "os", "firmware") != _attr(wanted, "os", "firmware"):
        changes.append(Change("firmware"))
    changes += _device_changes(live, wanted, "disk", _DISK, "disks", _disk_shape)
    changes += _device_changes(live, wanted, "interface", _NET, "networks", _nic_shape)
    running = _devices(live, "disk", _DISK)
    for name, (size, asked) in disk_sizes.items():
        target = _attr(running[name], "target", "dev") if name in running else None
        if target is not None and asked > size:  # a disk never shrinks
            step = _resize(target, asked)
            changes.append(Change(f"disks[{name}].size", step, f"grew disk {name} to {asked} bytes"))
    return changes


def card_macs(xml: str) -> dict[str, str]:
    """The MAC address of each Vapor network card of a domain's XML, by card name."""
    found = _devices(ET.fromstring(xml), "interface", _NET)
    return {name: mac for name, el in found.items() if (mac := _attr(el, "mac", "address"))}


def disk_targets(live_xml: str) -> dict[str, str]:
    """The target device (vda, sdb) of each Vapor disk of a domain's XML, by disk name."""
    found = _devices(ET.fromstring(live_xml), "disk", _DISK)
    return {name: target for name, el in found.items() if (target := _attr(el, "target", "dev"))}


def _resize(target: str, size: int) -> Step:
    return lambda dom: dom.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)


async def read_state(conn: Libvirt, dom: libvirt.virDomain) -> LiveState:
    """The live state the agent keeps in the running instance (empty when it has none)."""
    try:
        text = await conn.call(dom.metadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, LIVE_NS, _LIVE)
    except libvirt.libvirtError:
        return LiveState()
    return LiveState.from_xml(text)


async def write_state(conn: Libvirt, dom: libvirt.virDomain, state: LiveState) -> None:
    """Keep ``state`` in the running instance's metadata (gone at its next start)."""
    await conn.call(dom.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, state.to_xml(), "vlive", LIVE_NS, _LIVE)


async def apply(conn: Libvirt, dom: libvirt.virDomain, changes: list[Change], state: LiveState) -> list[Change]:
    """Make each change that can be made live: the changes made.

    A failed one leaves the instance as it was; its reason goes into ``state``.
    """
    done: list[Change] = []
    failed = state.failed
    for change in changes:
        if change.step is None:
            continue
        try:
            await conn.call(change.step, dom)
        except libvirt.libvirtError as exc:
            failed[change.field] = str(exc.get_error_message() or exc)
            log.warning("live change failed", extra={"domain": dom.name(), "field": change.field, "error": str(exc)})
            continue
        failed.pop(change.field, None)
        if change.memory_kib is not None:
            state.memory_kib = change.memory_kib
        done.append(change)
    return done
