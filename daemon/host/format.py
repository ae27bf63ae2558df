"""Formatting a block device, behind guards that refuse anything the host or a VM still uses.

``check(device, filesystem, label, facts)`` raises :class:`Refused` (with a
``code`` the gateway maps to the contract) when the device must not be
formatted, and ``format_device`` runs mkfs only after it passes. The guards:

- only paths under /dev, resolved through symlinks, that are block devices;
- a filesystem of the allow-list whose mkfs is installed, and a label that
  fits that filesystem's limits;
- not mounted, no partition of it mounted, no holder (device-mapper, md) and
  not used as swap;
- not the disk (or a partition of the disk) that holds / or /boot;
- not a VM disk: no libvirt domain's disk source, and no loop device whose
  backing file is a domain's disk or an image in the agent's disks folder.

The facts the guards decide from (mount tables, VM disks) are gathered by
:func:`gather_facts`, and tests can hand in their own to play a root disk.
mkfs runs with an argument list and ``--`` before the device, never a shell.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, NOT_FOUND, PERMISSION_DENIED

log = logging.getLogger("vapor.agent.format")

SYS_CLASS_BLOCK = Path("/sys/class/block")
MKFS_TIMEOUT = 600
# Filesystems a device may be formatted with, the tool that makes each, its
# options (force, quiet) and the longest label it stores (bytes).
MKFS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "ext4": ("mkfs.ext4", ("-F", "-q"), 16),
    "ext3": ("mkfs.ext3", ("-F", "-q"), 16),
    "ext2": ("mkfs.ext2", ("-F", "-q"), 16),
    "xfs": ("mkfs.xfs", ("-f", "-q"), 12),
    "btrfs": ("mkfs.btrfs", ("-f", "-q"), 255),
    "vfat": ("mkfs.vfat", (), 11),
    "exfat": ("mkfs.exfat", (), 15),
}
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
# Where the system lives: the disks under these are never formatted.
SYSTEM_MOUNT_POINTS = ("/", "/boot", "/boot/efi", "/usr", "/var")


class Refused(Exception):
    """The device may not be formatted: ``code`` is a contract error code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MountEntry:
    """One line of a mountinfo table: device number, mount point, filesystem type, source."""

    devno: str
    mount_point: str
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of /proc/<pid>/mountinfo (octal escapes in paths decoded)."""
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        parts = left.split()
        tail = right.split()
        if not sep or len(parts) < 5 or len(tail) < 2:
            continue
        entries.append(MountEntry(parts[2], _unescape(parts[4]), tail[0], _unescape(tail[1])))
    return entries


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _read_mountinfo(path: str) -> list[MountEntry]:
    try:
        return parse_mountinfo(Path(path).read_text())
    except OSError:
        return []


@dataclass
class Facts:
    """What the guards decide from: the mount tables, swap devices, and the VMs' disk files and devices."""

    mounts: list[MountEntry] = field(default_factory=list)
    system_mounts: list[MountEntry] = field(default_factory=list)  # the host's own (PID 1's) table
    swaps: list[str] = field(default_factory=list)
    vm_disks: set[str] = field(default_factory=set)  # domain disk sources (files or devices), resolved
    disks_dir: Path | None = None  # the agent's image folder: loop devices of its files are VM disks


def gather_facts(vm_disks: Iterable[str] = (), disks_dir: Path | None = None) -> Facts:
    """Facts of this host now: both mount tables, /proc/swaps, the given VM disk sources."""
    swaps = []
    try:
        for line in Path("/proc/swaps").read_text().splitlines()[1:]:
            if line.split():
                swaps.append(os.path.realpath(line.split()[0]))
    except OSError:
        pass
    return Facts(
        mounts=_read_mountinfo("/proc/self/mountinfo"),
        system_mounts=_read_mountinfo("/proc/1/mountinfo"),
        swaps=swaps,
        vm_disks={os.path.realpath(d) for d in vm_disks},
        disks_dir=disks_dir,
    )


def libvirt_disk_sources(conn: object) -> set[str]:
    """The disk sources (file or device) of every domain of a libvirt connection, defined or running."""
    import xml.etree.ElementTree as ET

    sources: set[str] = set()
    for dom in conn.listAllDomains(0):  # type: ignore[attr-defined]
        try:
            root = ET.fromstring(dom.XMLDesc(0))
        except Exception:
            continue
        for source in root.findall("./devices/disk/source"):
            for attr in ("file", "dev"):
                if source.get(attr):
                    sources.add(source.get(attr, ""))
    return sources


# -- the block device tree (sysfs) -------------------------------------------------
def _sys(name: str) -> Path:
    return SYS_CLASS_BLOCK / name


def _devno(name: str) -> str:
    try:
        return (_sys(name) / "dev").read_text().strip()
    except OSError:
        return ""


def _name_of_devno(devno: str) -> str | None:
    link = Path("/sys/dev/block") / devno
    return link.resolve().name if link.exists() else None


def _parent(name: str) -> str:
    """The disk a partition is on, or the name itself for a whole disk."""
    return _sys(name).resolve().parent.name if (_sys(name) / "partition").exists() else name


def _partitions(name: str) -> list[str]:
    base = _sys(name).resolve()
    try:
        return [child.name for child in base.iterdir() if (child / "partition").exists()]
    except OSError:
        return []


def _slaves(name: str) -> list[str]:
    try:
        return [p.name for p in (_sys(name) / "slaves").iterdir()]
    except OSError:
        return []


def _holders(name: str) -> list[str]:
    try:
        return [p.name for p in (_sys(name) / "holders").iterdir()]
    except OSError:
        return []


def _family(name: str) -> set[str]:
    """The device, the disk it is on and every partition of that disk."""
    disk = _parent(name)
    return {name, disk, *_partitions(disk)}


def _underlying(name: str, seen: set[str] | None = None) -> set[str]:
    """A device with every device it is built on (device-mapper, md slaves), and their disks."""
    seen = seen if seen is not None else set()
    if name in seen:
        return seen
    seen.add(name)
    seen.add(_parent(name))
    for slave in _slaves(name):
        _underlying(slave, seen)
    return seen


def _loop_backing_file(name: str) -> str | None:
    try:
        return (_sys(name) / "loop" / "backing_file").read_text().strip() or None
    except OSError:
        return None


# -- the guards ----------------------------------------------------------------------
def resolve_device(device: str) -> tuple[str, str]:
    """(real path, kernel name) of a /dev path that is a block device; Refused otherwise."""
    if not isinstance(device, str) or not device.startswith("/dev/") or "\x00" in device:
        raise Refused(INVALID_INPUT, f"device {device!r} must be a path under /dev")
    if any(part in ("..", ".") for part in device.split("/")):
        raise Refused(INVALID_INPUT, f"device {device!r} must not contain . or .. parts")
    real = os.path.realpath(device)
    if not real.startswith("/dev/"):
        raise Refused(INVALID_INPUT, f"device {device} resolves to {real}, which is not under /dev")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise Refused(NOT_FOUND, f"device {device} does not exist") from None
    except OSError as exc:
        raise Refused(INVALID_INPUT, f"device {device} cannot be examined: {exc.strerror}") from None
    if not stat.S_ISBLK(mode):
        raise Refused(INVALID_INPUT, f"{device} is not a block device")
    rdev = os.stat(real).st_rdev
    name = _name_of_devno(f"{os.major(rdev)}:{os.minor(rdev)}")
    if name is None:
        raise Refused(NOT_FOUND, f"device {device} is not known to the kernel")
    return real, name


def check_filesystem(filesystem: str, label: str | None) -> None:
    """INVALID_INPUT for a filesystem off the allow-list or a label that does not fit it."""
    if filesystem not in MKFS:
        raise Refused(
            INVALID_INPUT, f"filesystem {filesystem!r} is not supported; use one of {', '.join(sorted(MKFS))}"
        )
    tool, _options, max_label = MKFS[filesystem]
    if label is not None:
        if not label or not LABEL_PATTERN.match(label):
            raise Refused(INVALID_INPUT, "label may use letters, digits, '_', '.' and '-' only")
        if len(label.encode()) > max_label:
            raise Refused(INVALID_INPUT, f"a {filesystem} label holds at most {max_label} characters")
    if shutil.which(tool) is None:
        raise Refused(INVALID_INPUT, f"{filesystem} cannot be made on this host: {tool} is not installed")


def check_device(device: str, facts: Facts) -> tuple[str, str]:
    """(real path, kernel name) of a device that may be formatted; Refused (CONFLICT) when it is in use."""
    real, name = resolve_device(device)
    disk = _parent(name)
    own = {name, *_partitions(name)}  # the device and whatever lives on it
    protected: set[str] = set()
    for entry in facts.mounts + facts.system_mounts:
        if entry.mount_point in SYSTEM_MOUNT_POINTS:
            base = _name_of_devno(entry.devno)
            if base:
                for dev in _underlying(base):
                    protected |= _family(dev)
    if own & protected or disk in protected:
        raise Refused(PERMISSION_DENIED, f"{device} is the root or boot disk of the host (or part of it)")
    own_devnos = {_devno(n): n for n in own}
    for entry in facts.mounts + facts.system_mounts:
        if entry.devno in own_devnos:
            which = own_devnos[entry.devno]
            what = f"{device} is mounted" if which == name else f"{device} holds {which}, which is mounted"
            raise Refused(CONFLICT, f"{what} at {entry.mount_point}; unmount it first")
    for swap in facts.swaps:
        if os.path.basename(swap) in own:
            raise Refused(CONFLICT, f"{device} is in use as swap")
    for part in own:
        if _holders(part):
            raise Refused(CONFLICT, f"{device} is in use by {', '.join(_holders(part))} (device-mapper or RAID)")
    vm_sources = set(facts.vm_disks)
    for part in own:
        backing = _loop_backing_file(part)
        targets = {f"/dev/{part}"} | ({os.path.realpath(backing)} if backing else set())
        if targets & vm_sources:
            raise Refused(CONFLICT, f"{device} backs the disk of a virtual machine")
        if backing and facts.disks_dir is not None:
            folder = os.path.realpath(facts.disks_dir)
            if os.path.realpath(backing).startswith(folder + os.sep):
                raise Refused(CONFLICT, f"{device} is a loop device of the VM image {backing}")
    return real, name


def has_signature(real: str) -> bool:
    """Whether blkid finds any filesystem, RAID or partition-table signature on the device."""
    result = subprocess.run(
        ["blkid", "-p", "-c", "/dev/null", "-o", "export", "--", real],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode == 2:  # nothing found
        return False
    if result.returncode != 0:
        raise Refused(CONFLICT, f"cannot probe {real}: {result.stderr.strip() or 'blkid failed'}")
    return bool(result.stdout.strip())


def format_device(
    device: str, filesystem: str, label: str | None, facts: Facts, *, only_if_blank: bool = False
) -> bool:
    """Make ``filesystem`` on ``device`` after every guard passed; False when only_if_blank and it is not."""
    check_filesystem(filesystem, label)
    real, _name = check_device(device, facts)
    if only_if_blank and has_signature(real):
        return False
    tool, options, _max = MKFS[filesystem]
    label_args: list[str] = []
    if label:
        label_args = ["-n", label] if filesystem == "vfat" else ["-L", label]
    # An exclusive open fails while the kernel uses the device (mounted, held): the last check before writing.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_EXCL)
    except OSError as exc:
        raise Refused(CONFLICT, f"{device} is busy: {exc.strerror}") from None
    os.close(fd)
    argv = [tool, *options, *label_args, "--", real]
    log.info("formatting", extra={"device": real, "filesystem": filesystem, "label": label})
    result = subprocess.run(argv, capture_output=True, text=True, timeout=MKFS_TIMEOUT, check=False)
    if result.returncode != 0:
        raise Refused(CONFLICT, f"{tool} failed on {device}: {(result.stderr or result.stdout).strip()[:500]}")
    return True
