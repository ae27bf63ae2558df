"""The agent takes VM snapshots into the qcow2 disks, restores stopped VMs, and merges snapshots away.

Each VM is placed on the agent's node, and each snapshot and restore carries
the node's host label, standing in for the operator (which copies the VM's
host label onto them). Disk contents are written and read with qemu-io on
the domain's own qcow2 file, as a person would check them on the host.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import libvirt

from vapor.kube import Kube, NotFound
from vapor.model import MetadataPatch, ObjectMeta, VirtualMachine, VirtualMachineSpec, names
from vapor.model.snapshot import (
    SNAPSHOT_FINALIZER,
    VirtualMachineRestore,
    VirtualMachineRestoreSpec,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotSpec,
)

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm
from .test_vms import domain_of, reaches, vm_name


def qemu_io(path: Path, command: str) -> subprocess.CompletedProcess[str]:
    """One qemu-io command on a disk image (reads share the image with a running QEMU)."""
    shared = ["-U", "-r"] if command.startswith("read") else []
    return subprocess.run(["qemu-io", *shared, "-c", command, str(path)], capture_output=True, text=True, check=False)


def holds_pattern(path: Path, byte: int) -> bool:
    """Whether the disk's first 64 KiB are all ``byte`` (qemu-io's read -P says "Pattern verification failed")."""
    done = qemu_io(path, f"read -P {byte:#x} 0 64k")
    return done.returncode == 0 and "verification failed" not in done.stdout + done.stderr


async def snapshot(
    kube: Kube, namespace: str, vm: str, node: str, *, memory: bool = False, name: str | None = None
) -> VirtualMachineSnapshot:
    """Create a snapshot of ``vm`` labelled for ``node`` (the operator's label, set by hand here)."""
    snap = VirtualMachineSnapshot(
        metadata=ObjectMeta(
            name=name or f"snap-{uuid.uuid4().hex[:6]}", namespace=namespace, labels={names.HOST_LABEL: node}
        ),
        spec=VirtualMachineSnapshotSpec(vm=vm, include_memory=memory),
    )
    return await kube.resources(VirtualMachineSnapshot).create(snap, field_manager="test-operator-stand-in")


async def restore(kube: Kube, namespace: str, vm: str, snap: str, node: str) -> VirtualMachineRestore:
    obj = VirtualMachineRestore(
        metadata=ObjectMeta(
            name=f"restore-{uuid.uuid4().hex[:6]}", namespace=namespace, labels={names.HOST_LABEL: node}
        ),
        spec=VirtualMachineRestoreSpec(vm=vm, snapshot=snap),
    )
    return await kube.resources(VirtualMachineRestore).create(obj, field_manager="test-operator-stand-in")


async def settled(kube: Kube, kind: Any, namespace: str, name: str, phases: set[str], agent: AgentProcess) -> Any:
    """The snapshot or restore once its phase is one of ``phases``."""

    async def probe() -> Any:
        obj = await kube.resources(kind).get(name, namespace)
        return obj if obj.phase in phases else None

    try:
        return await eventually(probe, 60, f"{kind.__name__} {name} to reach {phases}")
    except AssertionError:
        print(agent.log()[-20000:])
        raise


async def exists(kube: Kube, kind: Any, name: str, namespace: str) -> bool:
    try:
        await kube.resources(kind).get(name, namespace)
    except NotFound:
        return False
    return True


async def set_run_strategy(kube: Kube, namespace: str, name: str, strategy: str) -> None:
    await kube.resources(VirtualMachine).patch(
        name, spec=VirtualMachineSpec.partial(run_strategy=strategy), namespace=namespace, field_manager="test"
    )


async def test_a_stopped_vms_snapshot_brings_its_disk_back_and_deleting_it_merges(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect, kubectl: Kubectl
) -> None:
    name = vm_name()
    made = await place_vm(
        kube, namespace, name, agent.node_name, run_strategy="Halted", disks=[{"name": "root", "size": "16Mi"}]
    )
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    disk = agent.storage_dir / (made.metadata.uid or "") / "root.qcow2"
    assert qemu_io(disk, "write -P 0xaa 0 64k").returncode == 0

    snap = await snapshot(kube, namespace, name, agent.node_name)
    snap = await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Ready", "Failed"}, agent)
    assert snap.phase == "Ready", snap.status
    assert snap.status.host == agent.node_name and snap.status.vm_uid == made.metadata.uid
    assert snap.status.disks == ["root"] and snap.status.memory is False and snap.status.creation_time
    assert SNAPSHOT_FINALIZER in (snap.metadata.finalizers or [])
    dom = domain_of(virt, vm)
    assert len(dom.listAllSnapshots(0)) == 1
    assert "Ready" in kubectl("get", "vsnap", snap.name, "-n", namespace).stdout

    assert qemu_io(disk, "write -P 0xbb 0 64k").returncode == 0
    assert holds_pattern(disk, 0xBB)
    done = await restore(kube, namespace, name, snap.name, agent.node_name)
    done = await settled(kube, VirtualMachineRestore, namespace, done.name, {"Succeeded", "Failed"}, agent)
    assert done.phase == "Succeeded", done.status
    assert holds_pattern(disk, 0xAA)  # the changed bytes are gone
    assert done.status.completion_time is not None

    kubectl("delete", "vsnap", snap.name, "-n", namespace, "--timeout=60s")  # waits for the finalizer
    assert dom.listAllSnapshots(0) == []  # merged away from the disk
    assert holds_pattern(disk, 0xAA)
    assert not await exists(kube, VirtualMachineSnapshot, snap.name, namespace)


async def test_a_running_vm_keeps_its_memory_and_is_restored_only_once_stopped(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    disks = [{"name": "root", "size": "16Mi"}]
    await place_vm(kube, namespace, name, agent.node_name, disks=disks, graceful_shutdown_seconds=0)  # no OS to ask
    vm = await reaches(kube, namespace, name, "Running", agent)

    disks_only = await snapshot(kube, namespace, name, agent.node_name)
    disks_only = await settled(kube, VirtualMachineSnapshot, namespace, disks_only.name, {"Ready", "Failed"}, agent)
    assert disks_only.phase == "Failed"
    assert "includeMemory" in (disks_only.status.failure_reason or "")

    snap = await snapshot(kube, namespace, name, agent.node_name, memory=True)
    snap = await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Ready", "Failed"}, agent)
    assert snap.phase == "Ready", snap.status
    assert snap.status.memory is True and (snap.status.size_bytes or 0) > 0
    await reaches(kube, namespace, name, "Running", agent)  # the VM controller left it running

    refused = await restore(kube, namespace, name, snap.name, agent.node_name)
    refused = await settled(kube, VirtualMachineRestore, namespace, refused.name, {"Succeeded", "Failed"}, agent)
    assert refused.phase == "Failed" and "stop the VM first" in (refused.status.failure_reason or "")

    await set_run_strategy(kube, namespace, name, "Halted")
    await reaches(kube, namespace, name, "Stopped", agent)
    done = await restore(kube, namespace, name, snap.name, agent.node_name)
    done = await settled(kube, VirtualMachineRestore, namespace, done.name, {"Succeeded", "Failed"}, agent)
    assert done.phase == "Succeeded", done.status
    dom = domain_of(virt, vm)
    assert dom.hasManagedSaveImage(0) == 1  # the next start resumes the kept memory
    await set_run_strategy(kube, namespace, name, "Running")
    await reaches(kube, namespace, name, "Running", agent)
    assert dom.hasManagedSaveImage(0) == 0
    assert (
        refused.name != done.name
        and (await kube.resources(VirtualMachineRestore).get(refused.name, namespace)).phase == "Failed"
    )


async def test_a_raw_disk_cannot_hold_a_snapshot(
    kube: Kube, agent: AgentProcess, namespace: str, qemu_tmp: Path
) -> None:
    name = vm_name()
    raw = qemu_tmp / "raw.img"
    raw.write_bytes(b"\0" * 2**20)
    disks = [{"name": "root", "size": "16Mi"}, {"name": "scratch", "path": str(raw)}]
    await place_vm(kube, namespace, name, agent.node_name, run_strategy="Halted", disks=disks)
    await reaches(kube, namespace, name, "Stopped", agent)
    snap = await snapshot(kube, namespace, name, agent.node_name)
    snap = await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Ready", "Failed"}, agent)
    assert snap.phase == "Failed"
    reason = snap.status.failure_reason or ""
    assert "scratch" in reason and str(raw) in reason and "qcow2" in reason


async def test_deleting_a_vm_takes_its_snapshots_and_restores_along(
    kube: Kube, agent: AgentProcess, namespace: str, kubectl: Kubectl
) -> None:
    name = vm_name()
    await place_vm(
        kube, namespace, name, agent.node_name, run_strategy="Halted", disks=[{"name": "root", "size": "16Mi"}]
    )
    await reaches(kube, namespace, name, "Stopped", agent)
    snap = await snapshot(kube, namespace, name, agent.node_name)
    await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Ready"}, agent)
    done = await restore(kube, namespace, name, snap.name, agent.node_name)
    await settled(kube, VirtualMachineRestore, namespace, done.name, {"Succeeded"}, agent)

    kubectl("delete", "vvm", name, "-n", namespace, "--timeout=60s")  # not held by its snapshots

    async def gone() -> bool:
        return not (
            await exists(kube, VirtualMachineSnapshot, snap.name, namespace)
            or await exists(kube, VirtualMachineRestore, done.name, namespace)
        )

    assert await eventually(gone, 30, "the VM's snapshot and restore to be deleted")


async def test_a_snapshot_waits_while_its_vm_migrates(kube: Kube, agent: AgentProcess, namespace: str) -> None:
    name = vm_name()
    disks = [{"name": "root", "size": "16Mi"}]
    await place_vm(kube, namespace, name, agent.node_name, run_strategy="Halted", disks=disks)
    await reaches(kube, namespace, name, "Stopped", agent)
    vms = kube.resources(VirtualMachine)
    moving = MetadataPatch(annotations={names.MIGRATING_ANNOTATION: "move-1"})
    await vms.patch(name, metadata=moving, namespace=namespace, field_manager="test-operator-stand-in")
    snap = await snapshot(kube, namespace, name, agent.node_name)
    snap = await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Pending"}, agent)
    ready = snap.condition("Ready")
    assert ready is not None and ready.reason == "Migrating", snap.status
    await asyncio.sleep(2)  # still not taken while the migration has the domain
    assert (await kube.resources(VirtualMachineSnapshot).get(snap.name, namespace)).phase == "Pending"
    ended = MetadataPatch(annotations={names.MIGRATING_ANNOTATION: None})
    await vms.patch(name, metadata=ended, namespace=namespace, field_manager="test-operator-stand-in")
    snap = await settled(kube, VirtualMachineSnapshot, namespace, snap.name, {"Ready", "Failed"}, agent)
    assert snap.phase == "Ready", snap.status
