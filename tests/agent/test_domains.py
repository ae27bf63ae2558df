"""The agent's own domain removal, against the real libvirtd: nothing libvirt keeps for a domain stops it."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest

from vapor.agent.host.libvirt import Libvirt

from ..support.libvirtd import Libvirtd

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices>
</domain>"""


@pytest.mark.parametrize("running", [False, True])
async def test_remove_takes_a_domain_with_snapshots(
    libvirtd: Libvirtd, virt: libvirt.virConnect, qemu_tmp: Path, running: bool
) -> None:
    """A VM deleted, a half-arrived migration cleaned, a migrated source undefined: one removal for all."""
    name = f"vtest-snap-{uuid.uuid4().hex[:8]}"
    image = qemu_tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    dom = virt.defineXML(DOMAIN_XML.format(name=name, image=image))
    conn = Libvirt(libvirtd.uri)
    try:
        dom.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>", 0)
        if running:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)  # no guest to boot: paused is enough
        await conn.open()
        found = await conn.lookup(name)
        assert found is not None and found.snapshotNum() == 1
        await conn.remove(found)
        assert await conn.lookup(name) is None
        await conn.undefine(found)  # gone already: nothing to do, no error
    finally:
        await conn.close()
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass


async def test_lookup_of_no_domain_is_none(libvirtd: Libvirtd) -> None:
    conn = Libvirt(libvirtd.uri)
    await conn.open()
    try:
        assert await conn.lookup(f"vtest-none-{uuid.uuid4().hex[:8]}") is None
    finally:
        await conn.close()
