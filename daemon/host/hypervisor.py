"""What this host can run, read from libvirt's capabilities."""

from __future__ import annotations

import grp
import os
import pwd
import xml.etree.ElementTree as ET

import libvirt  # type: ignore[import-untyped]

from vapor.model.host import HypervisorInfo

from .migrationpki import Transport, migration_uri


def _version(number: int) -> str:
    """Turn a libvirt version number (major * 1,000,000 + minor * 1,000 + release) into text."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def domain_types(caps_xml: str) -> list[str]:
    """Domain types (kvm, qemu) offered for the host's own architecture."""
    root = ET.fromstring(caps_xml)
    host_arch = root.findtext("host/cpu/arch")
    types: set[str] = set()
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if arch is not None and arch.get("name") == host_arch:
            types.update(d.get("type", "") for d in arch.findall("domain"))
    return sorted(t for t in types if t)


def kvm_device_usable(path: str = "/dev/kvm", qemu_user: str = "libvirt-qemu") -> bool:
    """Whether QEMU, running as ``qemu_user``, may open the KVM device.

    Checked from the device's owner, group and mode rather than with
    ``os.access``: the agent runs as root, which may open it when QEMU may not
    (a fresh ``/dev/kvm`` is often ``0600 root:root``).
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    try:
        user = pwd.getpwnam(qemu_user)
    except KeyError:  # QEMU runs as root here
        return os.access(path, os.R_OK | os.W_OK)
    if user.pw_uid == 0 or user.pw_uid == st.st_uid:
        return st.st_mode & 0o600 == 0o600 or user.pw_uid == 0
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if qemu_user in g.gr_mem}
    if st.st_gid in groups:
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


def kvm_usable(caps_xml: str) -> bool:
    """Whether libvirt offers KVM domains and QEMU can open /dev/kvm (else domains use TCG)."""
    return "kvm" in domain_types(caps_xml) and kvm_device_usable()


def describe(
    conn: libvirt.virConnect, migration_address: str | None = None, transport: Transport = "tls"
) -> HypervisorInfo:
    """The hypervisor's facts (blocking: call from a worker thread)."""
    caps = conn.getCapabilities()
    root = ET.fromstring(caps)
    cpu = root.find("host/cpu")
    features = sorted(f.get("name", "") for f in cpu.findall("feature")) if cpu is not None else []
    return HypervisorInfo(
        driver=conn.getType(),
        version=_version(conn.getVersion()),
        libvirt_version=_version(conn.getLibVersion()),
        arch=root.findtext("host/cpu/arch"),
        cpu_model=root.findtext("host/cpu/model"),
        cpu_vendor=root.findtext("host/cpu/vendor"),
        cpu_features=[f for f in features if f],
        kvm=kvm_usable(caps),
        domain_types=domain_types(caps),
        # Where other hosts' libvirtd reach this one (the agent's --migration-address); the URI is for people.
        migration_address=migration_address,
        migration_uri=migration_uri(migration_address, transport, None) if migration_address else None,
    )
