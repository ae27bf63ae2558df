"""What this machine is and how it is doing: system, CPU, memory, interfaces and disks.

Everything is read from the kernel (procfs, sysfs, netlink through pyroute2)
and psutil; filesystem type, label and UUID come from ``blkid`` because udev
does not run everywhere the agent does. Each function returns the model's
types, so the caller only has to put them into ``HostStatus``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil  # type: ignore[import-untyped]
from pyroute2.iproute import IPRoute  # type: ignore[import-untyped]

from vapor.model.host import (
    CPUInfo,
    DiskStatus,
    InterfaceStatistics,
    InterfaceStatus,
    MemoryInfo,
    PartitionStatus,
)

log = logging.getLogger("vapor.agent.inventory")

DiskType = Literal["ssd", "hdd", "virtual", "unknown"]

SYS_BLOCK = Path("/sys/block")
# Block devices that are not storage a person would list (RAM disks, compressed swap).
_SKIPPED_DISKS = ("ram", "zram")
_VIRTUAL_DISKS = ("loop", "nbd", "dm-", "md", "vd", "xvd")
# ARPHRD_* numbers of the links that have no "kind" in netlink.
_LINK_TYPES = {1: "ethernet", 772: "loopback", 65534: "none", 776: "sit", 768: "ipip", 778: "gre"}


def os_pretty_name(path: Path = Path("/etc/os-release")) -> str | None:
    """PRETTY_NAME from os-release, e.g. ``Debian GNU/Linux 12 (bookworm)``."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"')
    except OSError:
        pass
    return None


def system() -> dict[str, Any]:
    """Hostname, OS, kernel, boot time, uptime and load average."""
    boot = psutil.boot_time()
    return {
        "hostname": socket.gethostname(),
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "boot_time": datetime.fromtimestamp(int(boot), UTC),
        "uptime_seconds": max(0, int(datetime.now(UTC).timestamp() - boot)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model(path: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu() -> CPUInfo:
    """Processor model, cores, threads, and the usage since the previous call."""
    freq = None
    try:
        current = psutil.cpu_freq()
        freq = round(current.current, 1) if current else None
    except (OSError, NotImplementedError):
        freq = None
    return CPUInfo(
        model=_cpu_model(),
        cores=psutil.cpu_count(logical=False) or psutil.cpu_count(),
        threads=psutil.cpu_count(),
        usage_percent=round(psutil.cpu_percent(interval=None), 1),
        frequency_mhz=freq,
    )


def memory() -> MemoryInfo:
    """Memory and swap in bytes."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return MemoryInfo(
        total=vm.total,
        available=vm.available,
        used=vm.total - vm.available,
        usage_percent=round(vm.percent, 1),
        swap_total=swap.total,
        swap_used=swap.used,
    )


def _link_type(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind:
        return str(kind)
    return _LINK_TYPES.get(int(link["ifi_type"]), "unknown")


def interfaces(ipr: Any = None) -> list[InterfaceStatus]:
    """Every network interface with its addresses (CIDR) and counters, read over netlink.

    ``ipr``: an open pyroute2 IPRoute to read through (for example one in a
    network namespace); by default a fresh one in the agent's own namespace.
    """
    if ipr is None:
        with IPRoute() as own:
            return interfaces(own)
    links = ipr.get_links()
    addrs = ipr.get_addr()
    by_index: dict[int, list[str]] = {}
    for addr in addrs:
        ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
        if ip:
            cidr = str(ipaddress.ip_interface(f"{ip}/{addr['prefixlen']}"))
            by_index.setdefault(int(addr["index"]), []).append(cidr)
    result = []
    for link in links:
        stats = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
        result.append(
            InterfaceStatus(
                name=link.get_attr("IFLA_IFNAME"),
                mac=link.get_attr("IFLA_ADDRESS"),
                mtu=link.get_attr("IFLA_MTU"),
                state=str(link.get_attr("IFLA_OPERSTATE") or "unknown").lower(),
                type=_link_type(link),
                addresses=sorted(by_index.get(int(link["index"]), [])),
                statistics=InterfaceStatistics(
                    rx_bytes=stats["rx_bytes"],
                    tx_bytes=stats["tx_bytes"],
                    rx_packets=stats["rx_packets"],
                    tx_packets=stats["tx_packets"],
                )
                if stats is not None
                else None,
            )
        )
    return sorted(result, key=lambda i: i.name)


def blkid() -> dict[str, dict[str, str]]:
    """Filesystem type, label and UUID of every block device blkid can probe, by device path."""
    try:
        out = subprocess.run(
            ["blkid", "-c", "/dev/null", "-o", "export"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("blkid failed", extra={"error": str(exc)})
        return {}
    found: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "DEVNAME" in fields:
            found[fields["DEVNAME"]] = fields
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _size(dev: Path) -> int:
    return int(_read(dev / "size") or 0) * 512  # sysfs counts 512-byte sectors, whatever the device's block size


def _disk_type(name: str, dev: Path) -> DiskType:
    if name.startswith(_VIRTUAL_DISKS):
        return "virtual"
    rotational = _read(dev / "queue" / "rotational")
    return "hdd" if rotational == "1" else "ssd" if rotational == "0" else "unknown"


def _partition(
    name: str, size: int, probe: dict[str, dict[str, str]], mounts: dict[str, tuple[str, str]]
) -> PartitionStatus:
    path = f"/dev/{name}"
    fs = probe.get(path, {})
    mount_point, mounted_type = mounts.get(path, (None, None))
    used = available = None
    if mount_point:
        try:
            usage = psutil.disk_usage(mount_point)
            used, available = usage.used, usage.free
        except OSError:
            pass
    return PartitionStatus(
        name=name,
        path=path,
        size=size,
        filesystem=fs.get("TYPE") or mounted_type,  # blkid may not be allowed to read the device
        label=fs.get("LABEL"),
        uuid=fs.get("UUID"),
        mount_point=mount_point,
        used=used,
        available=available,
    )


def disks() -> list[DiskStatus]:
    """Block devices with their partitions (or the filesystem on the whole device)."""
    probe = blkid()
    mounts: dict[str, tuple[str, str]] = {}
    for part in psutil.disk_partitions(all=False):
        mounts.setdefault(os.path.realpath(part.device), (part.mountpoint, part.fstype))
    result = []
    for dev in sorted(SYS_BLOCK.iterdir()) if SYS_BLOCK.exists() else []:
        name = dev.name
        size = _size(dev)
        if name.startswith(_SKIPPED_DISKS) or size == 0:  # an unattached loop device has size 0
            continue
        parts = [
            _partition(child.name, _size(child), probe, mounts)
            for child in sorted(dev.iterdir())
            if (child / "partition").exists()
        ]
        if not parts and (f"/dev/{name}" in probe or f"/dev/{name}" in mounts):
            parts = [_partition(name, size, probe, mounts)]  # a filesystem straight on the device
        result.append(
            DiskStatus(
                name=name,
                path=f"/dev/{name}",
                size=size,
                model=_read(dev / "device" / "model") or None,
                type=_disk_type(name, dev),
                partitions=parts,
            )
        )
    return result
