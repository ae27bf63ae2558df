"""Clones (spec.cloneFrom): the agent copies the source VM's disks before the clone is defined.

The source and the clone are placed on the agent's node by the test
(standing in for the operator, which puts a clone beside its source). The
disks hold known bytes written with qemu-io, and the copies are checked as a
person would: ``qemu-img compare``, ``qemu-img info --backing-chain`` and
``qemu-img map``. No guest OS runs: the domains boot nothing.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from vapor.kube import Kube
from vapor.model import (
    ObjectMeta,
    VirtualMachine,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotSpec,
    VirtualMachineSnapshotStatus,
    VirtualMachineSpec,
    names,
)

from ..support.agent import AgentProcess
from ..support.imageserver import ImageServer
from ..support.wait import eventually
from .conftest import place_vm
from .imagetools import image_name, images, make_qcow2, sha256_of
from .test_image_disks import MakeImage
from .test_snapshots import settled, snapshot
from .test_vms import domain_of, patch, reaches, vm_name

__all__ = ["images"]  # the fixture

STAND_IN = "test-snapshot-agent-stand-in"


def qemu_io(path: Path, *commands: str, read_only: bool = False) -> str:
    """Run qemu-io commands on a qcow2 file; a failed pattern check fails the test."""
    args = ["qemu-io", "-f", "qcow2", *(["-r", "-U"] if read_only else [])]
    for command in commands:
        args += ["-c", command]
    out = subprocess.run([*args, str(path)], check=True, capture_output=True, text=True).stdout
    assert "Pattern verification failed" not in out, out
    return out


def chain(path: Path) -> list[dict[str, Any]]:
    """``qemu-img info --backing-chain``: the file first, then what it is backed by."""
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = json.loads(out)
    assert isinstance(found, list)
    return found


def own_data(path: Path) -> list[tuple[int, int]]:
    """(start, length) of the data the file itself holds (not its backing file's), from ``qemu-img map``."""
    out = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [(m["start"], m["length"]) for m in json.loads(out) if m["depth"] == 0 and m["data"]]


def same_bytes(a: Path, b: Path) -> bool:
    """``qemu-img compare``: whether the two disks show the guest the same bytes."""
    done = subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)], capture_output=True, text=True)
    return done.returncode == 0


def disk_file(agent: AgentProcess, vm: VirtualMachine, disk: str) -> Path:
    return agent.storage_dir / (vm.metadata.uid or "") / f"{disk}.qcow2"


def cloned(vm: VirtualMachine) -> tuple[str, str, str]:
    cond = vm.condition(names.ConditionType.CLONED)
    assert cond is not None, vm.status
    return cond.status, cond.reason, cond.message or ""


async def condition_reason(kube: Kube, namespace: str, name: str, reason: str, agent: AgentProcess) -> VirtualMachine:
    async def probe() -> VirtualMachine | None:
        vm = await kube.resources(VirtualMachine).get(name, namespace)
        cond = vm.condition(names.ConditionType.CLONED)
        return vm if cond is not None and cond.reason == reason else None

    try:
        return await eventually(probe, 60, f"{name}'s Cloned condition to say {reason}")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


async def ready_snapshot(kube: Kube, namespace: str, name: str, source: VirtualMachine) -> None:
    """A VirtualMachineSnapshot of ``source`` reported Ready by a stand-in, though no disk holds it."""
    snaps = kube.resources(VirtualMachineSnapshot)
    snap = VirtualMachineSnapshot(
        metadata=ObjectMeta(name=name, namespace=namespace), spec=VirtualMachineSnapshotSpec(vm=source.name)
    )
    await snaps.create(snap, field_manager=STAND_IN)
    status = VirtualMachineSnapshotStatus(phase="Ready", vm_uid=source.metadata.uid, disks=["data"])
    await snaps.apply_status(name, status, namespace=namespace, field_manager=STAND_IN)


async def stopped_source(
    kube: Kube, agent: AgentProcess, namespace: str, disks: list[dict[str, str]], **spec: Any
) -> tuple[VirtualMachine, Path]:
    """A source VM placed on the agent's node, once its disks are made and it is Stopped; its first disk's file."""
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name, run_strategy="Halted", disks=disks, **spec)
    source = await reaches(kube, namespace, name, "Stopped", agent)
    return source, disk_file(agent, source, disks[0]["name"])


async def run(kube: Kube, agent: AgentProcess, vm: VirtualMachine, strategy: str, phase: str) -> None:
    await patch(kube, vm.metadata.namespace or "", vm.name, spec=VirtualMachineSpec.partial(run_strategy=strategy))
    await reaches(kube, vm.metadata.namespace or "", vm.name, phase, agent)


async def clone_of(
    kube: Kube, agent: AgentProcess, source: VirtualMachine, disks: list[dict[str, str]], **clone_from: str
) -> str:
    """A clone of ``source`` placed beside it (to run once its disks are copied); its name."""
    name = vm_name()
    namespace = source.metadata.namespace or ""
    await place_vm(kube, namespace, name, agent.node_name, disks=disks, clone_from={"vm": source.name, **clone_from})
    return name


DATA = [{"name": "data", "size": "8Mi"}]


async def test_a_clone_waits_for_its_running_source_then_gets_a_standalone_copy(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    source, source_file = await stopped_source(kube, agent, namespace, DATA, graceful_shutdown_seconds=0)
    qemu_io(source_file, "write -P 0x5a 0 1M", "write -P 0xa5 6M 64k")
    await run(kube, agent, source, "Running", "Running")

    clone_name = await clone_of(kube, agent, source, DATA)
    waiting = await condition_reason(kube, namespace, clone_name, "SourceRunning", agent)
    assert waiting.status is not None and waiting.status.phase == "Pending"
    assert "stop it, or clone from a snapshot" in cloned(waiting)[2]
    assert not disk_file(agent, waiting, "data").exists()

    await patch(kube, namespace, source.name, spec=VirtualMachineSpec.partial(run_strategy="Halted"))
    clone = await reaches(kube, namespace, clone_name, "Running", agent)
    assert cloned(clone)[:2] == ("True", "Copied")
    clone_file = disk_file(agent, clone, "data")
    assert same_bytes(source_file, clone_file)
    qemu_io(clone_file, "read -P 0x5a 0 1M", "read -P 0xa5 6M 64k", read_only=True)
    assert "backing-filename" not in chain(clone_file)[0]  # stands alone
    assert domain_of(virt, clone).isActive()

    # Once copied, the clone no longer needs its source: gone, and the clone changed, it runs on.
    await kube.resources(VirtualMachine).delete(source.name, namespace)
    await patch(kube, namespace, clone_name, spec=VirtualMachineSpec.partial(cpu=2))

    async def redefined() -> VirtualMachine | None:
        vm = await kube.resources(VirtualMachine).get(clone_name, namespace)
        done = vm.status is not None and vm.status.observed_generation == vm.metadata.generation
        return vm if done and vm.phase == "Running" else None

    changed = await eventually(redefined, 60, "the clone to take its change")
    assert cloned(changed)[0] == "True"
    assert ET.fromstring(domain_of(virt, changed).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("vcpu") == "2"


async def test_linked_and_full_clones_of_an_image_overlay(
    kube: Kube, agent: AgentProcess, images: MakeImage, namespace: str, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "base.qcow2", data_mib=2, virtual="16M")
    sha, image = sha256_of(served), image_name()
    disks = [{"name": "data", "image": image}]
    with ImageServer(served) as server:
        await images(image, source={"http": {"url": server.url}}, checksum=sha)
        source, source_file = await stopped_source(kube, agent, namespace, disks)
    qemu_io(source_file, "write -P 0x22 8M 1M", "write -P 0x44 1M 64k")  # the source's own changes
    cached = agent.state_dir / "image-cache" / f"{sha}.qcow2"

    linked_name = await clone_of(kube, agent, source, disks)
    full_name = await clone_of(kube, agent, source, disks, mode="full")
    linked = await reaches(kube, namespace, linked_name, "Running", agent)
    full = await reaches(kube, namespace, full_name, "Running", agent)

    linked_file, full_file = disk_file(agent, linked, "data"), disk_file(agent, full, "data")
    assert same_bytes(source_file, linked_file) and same_bytes(source_file, full_file)
    linked_chain = chain(linked_file)
    assert [Path(c["filename"]) for c in linked_chain] == [linked_file, cached]
    assert own_data(linked_file) == [(1 << 20, 64 << 10), (8 << 20, 1 << 20)]  # only the source's changes
    assert [Path(c["filename"]) for c in chain(full_file)] == [full_file]
    assert own_data(full_file)[0][0] == 0  # the Image's bytes are in the full copy itself
    assert sha256_of(cached) == sha  # the Image is never written
    assert cloned(full)[2].endswith("(full).")


async def test_a_clone_from_a_snapshot_copies_the_disk_as_the_snapshot_kept_it(
    kube: Kube, agent: AgentProcess, namespace: str
) -> None:
    source, source_file = await stopped_source(kube, agent, namespace, DATA)
    qemu_io(source_file, "write -P 0x11 0 1M")
    snap = (await snapshot(kube, namespace, source.name, agent.node_name)).name  # taken by the agent
    await settled(kube, VirtualMachineSnapshot, namespace, snap, {"Ready"}, agent)
    qemu_io(source_file, "write -P 0x33 0 1M")  # changed after the snapshot
    await run(kube, agent, source, "Running", "Running")

    clone_name = await clone_of(kube, agent, source, DATA, snapshot=snap)
    clone = await reaches(kube, namespace, clone_name, "Running", agent)  # the source runs all along
    qemu_io(disk_file(agent, clone, "data"), "read -P 0x11 0 1M", read_only=True)
    assert "snapshot" in cloned(clone)[2]
    assert (await kube.resources(VirtualMachine).get(source.name, namespace)).phase == "Running"


async def test_a_copy_that_fails_leaves_no_partial_disk_and_says_why(
    kube: Kube, agent: AgentProcess, namespace: str
) -> None:
    snap = f"snap-{vm_name()}"
    source, _ = await stopped_source(kube, agent, namespace, DATA)
    await ready_snapshot(kube, namespace, snap, source)  # not in the disk: the copy fails
    clone_name = await clone_of(kube, agent, source, DATA, snapshot=snap)
    clone = await reaches(kube, namespace, clone_name, "Failed", agent)
    status, reason, message = cloned(clone)
    assert (status, reason) == ("False", "CloneFailed")
    assert "disk data" in message and snap in message
    folder = agent.storage_dir / (clone.metadata.uid or "")
    assert not list(folder.glob("data.qcow2*"))  # neither the disk nor its partial copy
