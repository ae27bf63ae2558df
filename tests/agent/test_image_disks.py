"""VM disks from Images: a VM waits for its host's copy, then runs on a copy-on-write overlay of it.

The VMs are placed on the agent's node by the test (standing in for the
operator), and nothing names the node in the Image's fetchHosts: the VM's
own need makes the agent fetch. The domain is checked through libvirt and
the overlay with qemu-img, as a person would.
"""

from __future__ import annotations

import io
import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path

import libvirt
import pycdlib

from vapor.kube import Kube, NotFound
from vapor.model import Image, VirtualMachine, names

from ..support.agent import AgentProcess
from ..support.imageserver import ImageServer
from ..support.wait import eventually
from .conftest import place_vm
from .imagetools import cache_files, image_name, images, make_qcow2, sha256_of, wait_entry
from .test_vms import domain_of, reaches, vm_name

__all__ = ["images"]  # the fixture

MakeImage = Callable[..., Awaitable[Image]]


def qemu_img_info(path: str) -> dict[str, object]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True, capture_output=True)
    info = json.loads(out.stdout)
    assert isinstance(info, dict)
    return info


def make_iso(folder: Path, name: str) -> Path:
    """A small ISO 9660 file (one README), made with pycdlib."""
    folder.mkdir(parents=True, exist_ok=True)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, vol_ident="VTEST")
    data = b"an installer would be here\n"
    iso.add_fp(io.BytesIO(data), len(data), "/README.;1", joliet_path="/README")
    out = folder / name
    iso.write(str(out))
    iso.close()
    out.chmod(0o644)
    return out


async def test_a_vm_waits_for_its_image_then_runs_on_an_overlay(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, virt: libvirt.virConnect, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "debian.qcow2", data_mib=4, virtual="64M")
    sha = sha256_of(served)
    image, name = image_name(), vm_name()
    with ImageServer(served) as server:
        server.rate = 1 << 20  # about 4 s: the VM is seen waiting
        await images(image, source={"http": {"url": server.url}}, checksum=sha)
        disks = [{"name": "root", "image": image, "size": "128Mi"}]
        await place_vm(kube, namespace, name, agent.node_name, disks=disks)

        async def waiting() -> VirtualMachine | None:
            vm = await kube.resources(VirtualMachine).get(name, namespace)
            cond = vm.condition(names.ConditionType.IMAGE_READY)
            fetching = cond is not None and cond.status == "False" and cond.reason == "ImageFetching"
            return vm if fetching and "%" in (cond.message or "") else None

        seen = await eventually(waiting, 30, "the VM to wait for its image")
        assert seen.status is not None and seen.status.phase == "Pending"
        vm = await reaches(kube, namespace, name, "Running", agent)
    ready = vm.condition(names.ConditionType.IMAGE_READY)
    assert ready is not None and ready.status == "True"
    dom = domain_of(virt, vm)
    assert dom.isActive()
    source = ET.fromstring(dom.XMLDesc(0)).find("./devices/disk/source")
    assert source is not None
    overlay = source.get("file", "")
    assert overlay == str(agent.storage_dir / (vm.metadata.uid or "") / "root.qcow2")
    info = qemu_img_info(overlay)
    cached = agent.state_dir / "image-cache" / f"{sha}.qcow2"
    assert info["backing-filename"] == str(cached)
    assert info["virtual-size"] == 128 << 20  # grown to disks[].size
    assert sha256_of(cached) == sha  # the image itself is never written
    await wait_entry(kube, image, agent.node_name, "Ready", agent)


async def test_a_size_below_the_images_virtual_size_is_refused(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2", virtual="64M")
    image, name = image_name(), vm_name()
    with ImageServer(served) as server:
        await images(image, source={"http": {"url": server.url}}, checksum=sha256_of(served))
        await place_vm(kube, namespace, name, agent.node_name, disks=[{"name": "root", "image": image, "size": "32Mi"}])
        vm = await reaches(kube, namespace, name, "Failed", agent)
    ready = vm.condition(names.ConditionType.READY)
    assert ready is not None and ready.reason == "DiskTooSmall"
    assert "virtual size" in (ready.message or "")


async def test_a_vm_whose_image_cannot_be_used_fails_with_the_images_reason(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    image, name = image_name(), vm_name()
    with ImageServer(served) as server:
        await images(image, source={"http": {"url": server.url}}, checksum="a" * 64)
        await place_vm(kube, namespace, name, agent.node_name, disks=[{"name": "root", "image": image}])
        vm = await reaches(kube, namespace, name, "Failed", agent)
    cond = vm.condition(names.ConditionType.IMAGE_READY)
    assert cond is not None and cond.status == "False" and cond.reason == "ChecksumMismatch"


async def test_an_installer_iso_is_a_read_only_cdrom_and_uefi_boots_ovmf(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, virt: libvirt.virConnect, qemu_tmp: Path
) -> None:
    iso = make_iso(qemu_tmp / "served", "installer.iso")
    sha = sha256_of(iso)
    image, name = image_name(), vm_name()
    with ImageServer(iso) as server:
        await images(image, source={"http": {"url": server.url}}, checksum=sha, format="iso")
        await place_vm(
            kube,
            namespace,
            name,
            agent.node_name,
            firmware="uefi",
            memory="256Mi",  # OVMF does not start in the 32 MiB of the other test VMs
            disks=[{"name": "root", "size": "64Mi"}, {"name": "install", "image": image, "cdrom": True}],
            run_strategy="Paused",  # started with its firmware and NVRAM, without running OVMF under a busy TCG
        )
        vm = await reaches(kube, namespace, name, "Paused", agent)
    dom = domain_of(virt, vm)
    root = ET.fromstring(dom.XMLDesc(0))
    cdrom = root.find("./devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("readonly") is not None
    assert cdrom.find("source").get("file") == str(agent.state_dir / "image-cache" / f"{sha}.iso")  # type: ignore[union-attr]
    loader = root.find("./os/loader")
    assert loader is not None and "OVMF" in (loader.text or "")
    nvram = agent.storage_dir / (vm.metadata.uid or "") / "VARS.fd"
    assert root.findtext("./os/nvram") == str(nvram) and nvram.exists()
    await kube.resources(VirtualMachine).delete(name, namespace)

    async def gone() -> bool:
        try:
            await kube.resources(VirtualMachine).get(name, namespace)
        except NotFound:
            return True
        return False

    await eventually(gone, 60, "the VM to be deleted")
    assert not nvram.parent.exists()  # the NVRAM went with the VM


async def test_an_image_is_collected_once_no_vm_here_uses_it(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    sha = sha256_of(served)
    image, name = image_name(), vm_name()
    resources = kube.resources(Image)
    with ImageServer(served) as server:
        # The finalizer stands in for the operator's, which holds an Image while VMs use it.
        await images(image, finalizers=[names.IMAGE_FINALIZER], source={"http": {"url": server.url}}, checksum=sha)
        await place_vm(kube, namespace, name, agent.node_name, disks=[{"name": "root", "image": image}])
        await reaches(kube, namespace, name, "Running", agent)
    await resources.delete(image)
    await _pause(3)
    kept = await resources.get(image)
    assert kept.on_host(agent.node_name) is not None  # its VM still runs on it here
    assert cache_files(agent) == [f"{sha}.qcow2"]
    await kube.resources(VirtualMachine).delete(name, namespace)

    async def dropped() -> bool:
        current = await resources.get(image)
        return current.on_host(agent.node_name) is None and cache_files(agent) == []

    await eventually(dropped, 60, "the entry and the copy to go")


async def test_a_deleted_image_nothing_uses_is_removed_from_the_cache(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    from .imagetools import ask_fetch

    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    sha = sha256_of(served)
    image = image_name()
    with ImageServer(served) as server:
        await images(image, source={"http": {"url": server.url}}, checksum=sha)
        await ask_fetch(kube, image, agent.node_name)
        await wait_entry(kube, image, agent.node_name, "Ready", agent)
    assert cache_files(agent) == [f"{sha}.qcow2"]
    await kube.resources(Image).delete(image)
    await eventually(lambda: cache_files(agent) == [], 30, "the copy to be collected")


async def _pause(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
