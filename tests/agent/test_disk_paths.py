"""A VM disk's ``path`` names only images in the node's image folders, or block devices its admin lists.

Each test places VMs whose disks try to reach a host file or device they
should not (a file outside the image folders, one reached through a symlink
planted in an image folder, an unlisted block device) on a real agent with
real libvirtd. The file stands in for /etc/shadow (the API server already
refuses that path by its text; see tests/gateway/test_vm_disk_paths.py): it
must keep its owner (libvirt hands a disk to QEMU's user before it starts),
the VM must be Failed with reason DiskPathRefused, and the agent must keep
running the VMs whose disks are fine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from vapor.kube import Kube

from ..storage.loops import LoopDevices
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm
from .test_vms import domain_of, reaches, ready, reasons, vm_name


@pytest.fixture
def secret_folder() -> Iterator[Path]:
    """A root-only folder outside every image folder, holding a file that plays /etc/shadow."""
    folder = Path(tempfile.mkdtemp(prefix="vtest-secret-", dir="/var/tmp"))
    folder.chmod(0o755)  # QEMU could reach it: only the agent's check stands in the way
    (folder / "shadow").write_bytes(b"root:$y$secret:20000:0:99999:7:::\n".ljust(1 << 20, b"\0"))
    (folder / "shadow").chmod(0o640)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def loops() -> Iterator[LoopDevices]:
    folder = Path(tempfile.mkdtemp(prefix="vtest-loops-", dir="/var/tmp"))
    devices = LoopDevices(folder)
    yield devices
    devices.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def failure(vm: object) -> str:
    return next(c.message for c in vm.status.conditions or [] if c.type == "Ready")  # type: ignore[attr-defined]


async def test_a_disk_path_outside_the_image_folders_fails_the_vm_and_the_file_stays_roots(
    kube: Kube,
    agent_factory: Callable[..., AgentProcess],
    node_name: str,
    namespace: str,
    qemu_tmp: Path,
    secret_folder: Path,
    loops: LoopDevices,
    virt: libvirt.virConnect,
) -> None:
    images = qemu_tmp / "images"
    images.mkdir()
    agent = agent_factory(node_name, image_dirs=(images,)).start()
    secret = secret_folder / "shadow"
    (images / "innocent.img").symlink_to(secret)  # planted by someone who may write in the image folder
    device = loops.make(size=1 << 20)
    attempts = {
        "direct": str(secret),
        "symlink": str(images / "innocent.img"),
        "device": device,
    }
    for label, path in attempts.items():
        await place_vm(kube, namespace, f"vtest-{label}", node_name, disks=[{"name": "data", "path": path}])
    good = images / "good.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(good), "16M"], check=True)
    fine = vm_name()
    await place_vm(kube, namespace, fine, node_name, disks=[{"name": "data", "path": str(good)}])

    for label, path in attempts.items():
        vm = await reaches(kube, namespace, f"vtest-{label}", "Failed", agent)
        assert ready(vm) == ("False", "DiskPathRefused"), label
        assert path in failure(vm), failure(vm)
        assert await eventually(
            lambda n=f"vtest-{label}": reasons(kube, namespace, n, "DiskPathRefused", 1), 30, "a Warning event"
        )
        with pytest.raises(libvirt.libvirtError):
            virt.lookupByName(f"{namespace}_vtest-{label}")  # never defined, so never handed to QEMU
    assert "--image-dir" in failure(await reaches(kube, namespace, "vtest-direct", "Failed", agent))
    assert "--block-device" in failure(await reaches(kube, namespace, "vtest-device", "Failed", agent))
    assert (secret.stat().st_uid, secret.stat().st_gid) == (0, 0)
    await reaches(kube, namespace, fine, "Running", agent)  # the agent goes on with the VMs that are fine
    assert agent.running()


async def test_a_block_device_the_admin_lists_is_given_to_the_vm_as_a_block_disk(
    kube: Kube,
    agent_factory: Callable[..., AgentProcess],
    node_name: str,
    namespace: str,
    loops: LoopDevices,
    virt: libvirt.virConnect,
) -> None:
    listed, unlisted = loops.make(size=1 << 20), loops.make(size=1 << 20)
    agent = agent_factory(node_name, extra_args=("--block-device", listed)).start()
    name = vm_name()
    await place_vm(kube, namespace, name, node_name, run_strategy="Halted", disks=[{"name": "data", "path": listed}])
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    disk = ET.fromstring(domain_of(virt, vm).XMLDesc(0)).find("devices/disk")
    assert disk is not None and disk.get("type") == "block"
    assert disk.find("source").get("dev") == listed  # type: ignore[union-attr]
    other = vm_name()
    await place_vm(kube, namespace, other, node_name, disks=[{"name": "data", "path": unlisted}])
    refused = await reaches(kube, namespace, other, "Failed", agent)
    assert ready(refused) == ("False", "DiskPathRefused")
