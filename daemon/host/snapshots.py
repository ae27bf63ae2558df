"""A VM's snapshots as libvirt internal snapshots inside its qcow2 disks: take, revert, drop.

What this machine's libvirt (9.0) and QEMU (7.2) allow, found by trying:

- a stopped domain: an internal snapshot of its qcow2 disks (``qemu-img
  snapshot`` under libvirt), milliseconds; reverting puts the disks back;
- a running (or paused) domain: an internal snapshot only *with* its memory
  and device state (QEMU's ``savevm``). libvirt refuses a disk-only internal
  snapshot of a running domain ("internal snapshot of a running VM must
  include the memory state"; with the disk-only flag: "active qemu domains
  require external disk snapshots"), and a guest-agent freeze (QUIESCE) needs
  the disk-only flag, so it cannot help either. A running VM asked for a
  snapshot without ``includeMemory`` is therefore refused with that reason
  (stop it, or keep its memory) rather than given something else;
- a raw file or a block device cannot hold an internal snapshot: the
  snapshot is refused naming the disk. CD-ROMs (an installer ISO, the
  cloud-init seed) are read-only and left out.

Reverting to a snapshot that kept memory loads that state paused and saves
it as the domain's managed-save image, then the domain is off: the next start
resumes the guest where it was, as ``virsh start`` does after ``managedsave``.
Reverting to a disk-only snapshot first drops any managed-save image, which
would otherwise resume a memory that no longer matches the disks.
Every function here blocks: call it through ``Libvirt.call`` or a thread.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import libvirt  # type: ignore[import-untyped]

DISK_ALIAS_PREFIX = "ua-disk-"
ACTIVE_STATES = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
MEMORY_STATES = ("running", "paused", "blocked")  # a snapshot taken in these kept the memory
NEEDS_MEMORY = (
    "a running VM's disks can be kept only together with its memory here (libvirt takes an internal snapshot "
    "of a running domain with its memory state, never its disks alone): stop the VM first, or set includeMemory"
)


class SnapshotRefused(Exception):
    """The snapshot or restore cannot be done; ``reason`` is a CamelCase word, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SnapshotDisk:
    """One disk of the domain, as a snapshot sees it."""

    target: str  # vda, sdb...
    name: str  # the VM's disk name (from its alias), else the target
    path: str
    format: str
    block: bool
    cdrom: bool


@dataclass(frozen=True)
class Taken:
    """A snapshot as libvirt made it."""

    creation_time: datetime
    size_bytes: int
    disks: list[str]
    memory: bool


def disks_of(domain_xml: str) -> list[SnapshotDisk]:
    """The disks of a domain's XML."""
    out = []
    for el in ET.fromstring(domain_xml).iterfind("devices/disk"):
        target = el.find("target")
        source = el.find("source")
        driver = el.find("driver")
        alias = el.find("alias")
        dev = target.get("dev", "") if target is not None else ""
        alias_name = alias.get("name", "") if alias is not None else ""
        name = alias_name.removeprefix(DISK_ALIAS_PREFIX) if alias_name.startswith(DISK_ALIAS_PREFIX) else dev
        path = (source.get("file") or source.get("dev") or "") if source is not None else ""
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        out.append(SnapshotDisk(dev, name, path, fmt, el.get("type") == "block", el.get("device") == "cdrom"))
    return out


def kept_disks(disks: list[SnapshotDisk]) -> list[SnapshotDisk]:
    """The disks a snapshot covers (every one but CD-ROMs); refused when one of them cannot hold it."""
    kept = [d for d in disks if not d.cdrom]
    for disk in kept:
        if disk.block or disk.format != "qcow2":
            kind = "a block device" if disk.block else f"a {disk.format} file"
            raise SnapshotRefused(
                "DiskCannotSnapshot",
                f"disk {disk.name} ({disk.path}) is {kind}: only qcow2 disks can hold a snapshot "
                "(convert it to qcow2, or leave it out of the VM)",
            )
    return kept


def libvirt_name(name: str, uid: str) -> str:
    """The snapshot's name in libvirt: the resource's name and the start of its uid (a name made again differs)."""
    return f"{name}-{uid[:8]}"


def snapshot_xml(
    name: str, description: str, disks: list[SnapshotDisk], all_disks: list[SnapshotDisk], memory: bool
) -> str:
    """The <domainsnapshot> asking for internal snapshots of ``disks`` and none of the other disks."""
    kept = {d.target for d in disks}
    parts = [
        f"<disk name='{escape(d.target)}' snapshot='{'internal' if d.target in kept else 'no'}'/>" for d in all_disks
    ]
    return (
        f"<domainsnapshot><name>{escape(name)}</name><description>{escape(description)}</description>"
        f"<memory snapshot='{'internal' if memory else 'no'}'/><disks>{''.join(parts)}</disks></domainsnapshot>"
    )


def _find(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise


def _state_of(snap: libvirt.virDomainSnapshot) -> tuple[str, datetime]:
    root = ET.fromstring(snap.getXMLDesc(0))
    created = datetime.fromtimestamp(int(root.findtext("creationTime") or "0"), UTC)
    return root.findtext("state") or "", created


def vm_state_size(path: str, name: str) -> int:
    """Bytes of memory state that snapshot ``name`` keeps in the qcow2 file ``path`` (0 when none)."""
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        return 0
    for snap in json.loads(done.stdout).get("snapshots") or []:
        if snap.get("name") == name:
            return int(snap.get("vm-state-size") or 0)
    return 0


def take(dom: libvirt.virDomain, name: str, description: str, include_memory: bool) -> Taken:
    """Take snapshot ``name`` of ``dom`` (or report the one taken already under that name)."""
    disks = disks_of(dom.XMLDesc(0))
    kept = kept_disks(disks)
    if not kept:
        raise SnapshotRefused("NoDisks", "the VM has no disk to snapshot (CD-ROMs are left out)")
    snap = _find(dom, name)
    if snap is None:
        active = dom.state()[0] in ACTIVE_STATES
        if active and not include_memory:
            raise SnapshotRefused("MemoryRequired", NEEDS_MEMORY)
        try:
            snap = dom.snapshotCreateXML(snapshot_xml(name, description, kept, disks, active), 0)
        except libvirt.libvirtError as exc:
            raise SnapshotRefused("SnapshotFailed", f"libvirt could not take the snapshot: {exc}") from exc
    state, created = _state_of(snap)
    memory = state in MEMORY_STATES
    size = sum(vm_state_size(d.path, name) for d in kept) if memory else 0
    return Taken(created, size, [d.name for d in kept], memory)


def revert(dom: libvirt.virDomain, name: str) -> bool:
    """Put ``dom`` (shut off) back to snapshot ``name``; whether the memory came back too (the next start resumes)."""
    snap = _find(dom, name)
    if snap is None:
        raise SnapshotRefused("SnapshotMissing", f"the VM's disks hold no snapshot {name} (it was lost or merged)")
    if dom.state()[0] in ACTIVE_STATES:
        raise SnapshotRefused("VMRunning", "stop the VM first: its domain is running")
    state, _ = _state_of(snap)
    if dom.hasManagedSaveImage(0):  # a saved memory of another moment must not resume over these disks
        dom.managedSaveRemove(0)
    if state not in MEMORY_STATES:
        dom.revertToSnapshot(snap, 0)
        return False
    dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
    try:
        dom.managedSave(0)
    except libvirt.libvirtError:
        dom.destroy()  # never leave it running behind the VM's back
        raise
    return True


def drop(dom: libvirt.virDomain, name: str) -> bool:
    """Merge snapshot ``name`` away from ``dom``'s disks; False when it was not there."""
    snap = _find(dom, name)
    if snap is None:
        return False
    snap.delete(0)
    return True


def names_of(dom: libvirt.virDomain) -> list[str]:
    """The snapshots ``dom`` holds, by libvirt name."""
    return [s.getName() for s in dom.listAllSnapshots(0)]
