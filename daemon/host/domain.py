"""The libvirt domain of a VirtualMachine: its name, its XML, and the Vapor metadata inside it.

The metadata element carries the VM's uid, namespace and name, so an agent
that restarts finds the domains it made and adopts them instead of defining
duplicates; it also carries a hash of the spec the definition was made from,
so a changed spec is noticed without comparing XML.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vapor.model import VirtualMachine, quantity_bytes
from vapor.model.virtualmachine import DiskSpec

from .diskpaths import DiskSource
from .imagecache import CachedImage

METADATA_NS = "https://vapor.io/xmlns/domain/v1alpha1"
METADATA_PREFIX = "vapor"
# What the agent did to a running instance (livechange); a definition carries the memory it boots with.
LIVE_NS = "https://vapor.io/xmlns/live/v1alpha1"
QCOW2_MAGIC = b"QFI\xfb"
SEED_ALIAS = "ua-cidata"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
ET.register_namespace(METADATA_PREFIX, METADATA_NS)
ET.register_namespace("vlive", LIVE_NS)


def domain_name(namespace: str, name: str) -> str:
    """The domain's name: ``<namespace>_<name>`` (neither part can hold an underscore)."""
    return f"{namespace}_{name}"


def key_of_domain(domain: str) -> tuple[str, str] | None:
    """(namespace, name) of a domain named by :func:`domain_name`, else None."""
    namespace, sep, name = domain.partition("_")
    return (namespace, name) if sep and namespace and name else None


@dataclass(frozen=True)
class VaporMetadata:
    """What the agent writes into a domain's <metadata> about its VirtualMachine."""

    uid: str
    namespace: str
    name: str
    spec_hash: str

    def to_xml(self) -> str:
        """The metadata element (without namespace prefix; libvirt adds it)."""
        el = ET.Element(
            "vm", {"uid": self.uid, "namespace": self.namespace, "name": self.name, "spec-hash": self.spec_hash}
        )
        return ET.tostring(el, encoding="unicode")

    @classmethod
    def from_xml(cls, text: str) -> VaporMetadata | None:
        """Parse the element libvirt returns for our namespace, or None if it is not ours."""
        try:
            el = ET.fromstring(text)
        except ET.ParseError:
            return None
        uid = el.get("uid")
        if not uid:
            return None
        return cls(uid, el.get("namespace", ""), el.get("name", ""), el.get("spec-hash", ""))


def spec_hash(vm: VirtualMachine, domain_type: str) -> str:
    """A short hash of what the definition is made from (not the run strategy, which is state)."""
    spec = vm.spec.to_api()
    for transient in ("runStrategy", "gracefulShutdownSeconds", "hostSelector", "host"):
        spec.pop(transient, None)
    if "cloudInit" in spec:  # the seed CD-ROM's presence shapes the XML; its content is the ISO's business
        spec["cloudInit"] = True
    spec["domainType"] = domain_type
    spec["guestAgentChannel"] = True  # domains defined before the channel came are redefined once
    spec["consoles"] = "vnc-unlistened,bios-serial"  # and those defined before the display came (see _display)
    spec["memballoon"] = "virtio"  # and those defined before the balloon came
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def memory_kib(quantity: str | int) -> int:
    """A memory quantity in KiB, as libvirt counts it (rounded up)."""
    return -(-quantity_bytes(quantity) // 1024)


def created_disk_path(storage_dir: Path, uid: str, disk: DiskSpec) -> Path:
    """Where the agent keeps the image it creates for a size-disk: one folder per VM uid."""
    return storage_dir / uid / f"{disk.name}.qcow2"


def image_format(path: Path) -> str:
    """qcow2 when the file starts with the qcow2 magic, else raw."""
    try:
        with path.open("rb") as f:
            return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"
    except OSError:
        return "raw"


def nvram_path(storage_dir: Path, uid: str) -> Path:
    """The UEFI variables of a VM (firmware uefi), in its own folder: removed with its disks."""
    return storage_dir / uid / "VARS.fd"


@dataclass(frozen=True)
class DiskFile:
    """Where a disk's bytes are on this host."""

    path: Path
    format: str
    block: bool


def _disk_file(
    disk: DiskSpec,
    storage_dir: Path,
    uid: str,
    sources: Mapping[str, DiskSource] | None,
    images: Mapping[str, CachedImage] | None,
) -> DiskFile:
    """The file (or device) a disk is on this host, and its format."""
    if disk.image is not None and disk.cdrom:
        cached = (images or {}).get(disk.name)
        if cached is None:
            raise ValueError(f"disk {disk.name}: Image {disk.image} is not cached on this host")
        return DiskFile(cached.path, "qcow2" if cached.format == "qcow2" else "raw", False)
    if disk.image is not None or disk.size is not None:  # an overlay on an Image, or a new image
        return DiskFile(created_disk_path(storage_dir, uid, disk), "qcow2", False)
    given = (sources or {}).get(disk.name) or DiskSource(disk.path or "", False)
    path = Path(given.path)
    return DiskFile(path, "raw" if given.block else image_format(path), given.block)


def _disk(devices: ET.Element, disk: DiskSpec, file: DiskFile, counts: dict[str, int]) -> None:
    """The <disk> of one VM disk, named after it (alias ua-disk-<name>); a CD-ROM is read-only, on sata."""
    bus = "sata" if disk.cdrom and disk.bus == "virtio" else disk.bus  # virtio has no CD-ROM
    prefix = _TARGET_PREFIX[bus]
    index = counts.get(prefix, 0)
    counts[prefix] = index + 1
    el = _sub(devices, "disk", type="block" if file.block else "file", device="cdrom" if disk.cdrom else "disk")
    _sub(el, "driver", name="qemu", type=file.format)
    _sub(el, "source", **({"dev": str(file.path)} if file.block else {"file": str(file.path)}))
    _sub(el, "target", dev=prefix + chr(ord("a") + index), bus=bus)
    _sub(el, "alias", name=f"ua-disk-{disk.name}")
    if disk.read_only or disk.cdrom:
        _sub(el, "readonly")
    if disk.boot_order:
        _sub(el, "boot", order=str(disk.boot_order))


def _firmware(os_el: ET.Element, vm: VirtualMachine, storage_dir: Path) -> None:
    """UEFI firmware: OVMF chosen by libvirt from the host's descriptors, without secure boot.

    The VM's NVRAM is in its own folder (removed with its disks).
    """
    if vm.spec.firmware != "uefi":
        return
    os_el.set("firmware", "efi")
    firmware = _sub(os_el, "firmware")
    _sub(firmware, "feature", enabled="no", name="secure-boot")
    _sub(os_el, "nvram", str(nvram_path(storage_dir, vm.metadata.uid or "")))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def build_xml(
    vm: VirtualMachine,
    *,
    domain_type: str,
    storage_dir: Path,
    arch: str = "x86_64",
    uuid: str | None = None,
    sources: Mapping[str, DiskSource] | None = None,
    seed: Path | None = None,
    images: Mapping[str, CachedImage] | None = None,
    macs: Mapping[str, str] | None = None,
) -> str:
    """The domain XML for ``vm`` (keeping ``uuid`` when redefining an existing domain).

    ``sources``: the path disks as this node resolved and allowed them (see
    diskpaths), by disk name; a path disk without one is taken as the file
    its spec names. ``seed``: the cloud-init seed ISO, attached as a read-only CD-ROM.
    ``images``: the cached Images of the image disks, by disk name (a CD-ROM of
    an Image is that file itself; other image disks are their overlays, kept
    like size-disks). ``macs``: the MAC addresses libvirt gave the cards of an
    earlier definition, by card name: a card without a ``mac`` keeps its own.
    """
    ns, name, uid = vm.metadata.namespace or "", vm.name, vm.metadata.uid or ""
    spec = vm.spec
    root = ET.Element("domain", {"type": domain_type})
    _sub(root, "name", domain_name(ns, name))
    if uuid:
        _sub(root, "uuid", uuid)
    _sub(root, "title", f"{ns}/{name}")
    _sub(root, "description", "Managed by the Vapor agent; change the VirtualMachine resource, not this domain.")
    metadata = _sub(root, "metadata")
    meta = VaporMetadata(uid, ns, name, spec_hash(vm, domain_type))
    vapor_el = ET.fromstring(meta.to_xml())
    vapor_el.tag = f"{{{METADATA_NS}}}vm"
    metadata.append(vapor_el)
    _sub(metadata, f"{{{LIVE_NS}}}live", memory=str(memory_kib(spec.memory)))  # the balloon's target at boot
    ceiling = max(memory_kib(spec.max_memory or spec.memory), memory_kib(spec.memory))
    _sub(root, "memory", str(ceiling), unit="KiB")  # the balloon's ceiling
    _sub(root, "currentMemory", str(memory_kib(spec.memory)), unit="KiB")
    _sub(root, "vcpu", str(max(spec.max_cpu or spec.cpu, spec.cpu)), placement="static", current=str(spec.cpu))
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch=arch)
    disks = spec.disks or []
    _firmware(os_el, vm, storage_dir)
    if vm.spec.firmware != "uefi":
        _sub(os_el, "bios", useserial="yes")  # SeaBIOS writes its screen to the serial console too
    if not any(d.boot_order for d in disks):
        _sub(os_el, "boot", dev="hd")
        if any(d.cdrom for d in disks):
            _sub(os_el, "boot", dev="cdrom")  # an empty disk and an installer ISO: the ISO boots
    features = _sub(root, "features")
    _sub(features, "acpi")  # a graceful shutdown is an ACPI power button press
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    counts: dict[str, int] = {}
    for disk in disks:
        _disk(devices, disk, _disk_file(disk, storage_dir, uid, sources, images), counts)
    for net in spec.networks or []:
        el = _sub(devices, "interface", type=net.type)
        if net.type == "network":
            _sub(el, "source", network=net.source or "default")
        elif net.type == "bridge":
            _sub(el, "source", bridge=net.source or "")
        if mac := net.mac or (macs or {}).get(net.name):
            _sub(el, "mac", address=mac.lower())
        _sub(el, "model", type=net.model)
        _sub(el, "alias", name=f"ua-net-{net.name}")
    if seed is not None:
        _seed_cdrom(devices, seed)
    _guest_agent_channel(devices)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    _display(devices)
    _sub(devices, "memballoon", model="virtio")  # memory changes while the guest runs (livechange)
    return ET.tostring(root, encoding="unicode")


def _seed_cdrom(devices: ET.Element, seed: Path) -> None:
    """The cloud-init seed as a read-only SATA CD-ROM, on the first SATA/SCSI target the disks left free."""
    taken = {t.get("dev") for t in devices.iterfind("disk/target")}
    dev = next(f"sd{chr(c)}" for c in range(ord("a"), ord("z") + 1) if f"sd{chr(c)}" not in taken)
    el = _sub(devices, "disk", type="file", device="cdrom")
    _sub(el, "driver", name="qemu", type="raw")
    _sub(el, "source", file=str(seed))
    _sub(el, "target", dev=dev, bus="sata")
    _sub(el, "readonly")
    _sub(el, "alias", name=SEED_ALIAS)


def _guest_agent_channel(devices: ET.Element) -> None:
    """The virtio-serial channel QEMU's guest agent talks over (libvirt picks the socket path)."""
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)


def _display(devices: ET.Element) -> None:
    """A VGA card and QEMU's VNC server listening nowhere: the agent reaches it through openGraphicsFD only."""
    graphics = _sub(devices, "graphics", type="vnc")
    _sub(graphics, "listen", type="none")
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")
