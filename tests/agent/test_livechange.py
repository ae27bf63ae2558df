"""A running VM whose spec changes: the agent changes the running domain live, or says the change waits for a restart.

Real libvirtd and QEMU, with a small domain that boots no OS: vCPU hot-plug,
the balloon's target and blockResize need no guest, an attached disk or card
shows in the running instance's XML. Taking a vCPU away needs the guest's
help, so here it fails, which shows a failed live change leaving the domain
running as it was and saying why. A new ceiling (maxMemory) waits for the
next start: RestartRequired names it, and the restart clears it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import libvirt

from vapor.agent.host.livechange import LiveState, differences
from vapor.kube import Kube
from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineSpec, names

from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm
from .test_cloudinit import condition, event_texts
from .test_vms import domain_of, patch, qemu_id, reaches, vm_name, vm_status

LIVE_NS = "https://vapor.io/xmlns/live/v1alpha1"
MiB = 2**20


async def settles(
    kube: Kube, namespace: str, name: str, agent: AgentProcess, check: Callable[[VirtualMachine], Any]
) -> VirtualMachine:
    """The VM once the agent has observed its latest generation and ``check`` holds."""

    async def probe() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        seen = vm.status is not None and vm.status.observed_generation == vm.metadata.generation
        return vm if seen and check(vm) else None

    try:
        return await eventually(probe, 60, f"{name} to settle")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


def restart_required(vm: VirtualMachine) -> tuple[str, str] | None:
    return condition(vm, names.ConditionType.RESTART_REQUIRED)


def live(dom: libvirt.virDomain) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(0))


async def test_cpu_and_memory_change_live_up_to_their_ceilings_and_a_failed_change_is_named(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name, cpu=1, max_cpu=3, memory="32Mi", max_memory="64Mi")
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    xml = live(dom)
    assert (xml.findtext("vcpu"), xml.find("vcpu").get("current")) == ("3", "1")  # type: ignore[union-attr]
    assert xml.findtext("memory") == str(64 * 1024) and xml.find("devices/memballoon").get("model") == "virtio"  # type: ignore[union-attr]
    running = qemu_id(virt, dom)

    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(cpu=2, memory="48Mi"))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("False", "DefinitionCurrent"))
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2  # `virsh vcpucount --live`
    target = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LIVE_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    assert target.get("memory") == str(48 * 1024)  # the balloon's target (a guest without a driver gives nothing back)
    assert qemu_id(virt, dom) == running and vm.status and not vm.status.pending_changes
    await eventually(lambda: _has(kube, namespace, "2 vCPUs"), 30, "the LiveChanged Event")

    # Unplugging a vCPU needs the guest: without one it fails, the domain keeps 2 and runs on, and the VM says why.
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(cpu=1))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("True", "ChangesPending"))
    assert vm.status and vm.status.pending_changes == ["cpu"]
    cond = vm.condition(names.ConditionType.RESTART_REQUIRED)
    assert cond is not None and "live change failed for cpu:" in cond.message
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2 and qemu_id(virt, dom) == running
    assert vm.status.phase == "Running"


async def _has(kube: Kube, namespace: str, text: str) -> bool:
    return text in await event_texts(kube, namespace)


async def test_a_disk_grows_and_a_new_disk_and_card_are_attached_to_the_running_domain(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    lan = {"name": "lan", "type": "user"}  # no MAC given: libvirt's choice, kept across redefinitions
    made = await place_vm(
        kube, namespace, name, agent.node_name, disks=[{"name": "root", "size": "64Mi"}], networks=[lan]
    )
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    running = qemu_id(virt, dom)
    mac = live(dom).find("devices/interface/mac").get("address")  # type: ignore[union-attr]

    disks = [{"name": "root", "size": "128Mi"}, {"name": "data", "size": "16Mi"}]
    nics = [lan, {"name": "extra", "type": "user"}]
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(disks=disks, networks=nics))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("False", "DefinitionCurrent"))
    assert dom.blockInfo("vda")[0] == 128 * MiB  # `virsh domblkinfo`: the guest sees the bigger disk
    aliases = {el.get("name") for el in live(dom).iterfind("devices/*/alias")}
    assert {"ua-disk-data", "ua-net-extra"} <= aliases
    assert dom.blockInfo("vdb")[0] == 16 * MiB
    assert (agent.storage_dir / (made.metadata.uid or "") / "data.qcow2").exists()
    defined = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for xml in (live(dom), defined):  # the card that was there keeps its MAC, now and at the next start
        macs = {n.find("alias").get("name"): n.find("mac").get("address") for n in xml.iterfind("devices/interface")}  # type: ignore[union-attr]
        assert macs["ua-net-lan"] == mac and macs["ua-net-extra"] != mac
    assert qemu_id(virt, dom) == running and vm.status and not vm.status.pending_changes


async def test_a_new_ceiling_waits_for_the_next_start_and_clears_then(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name, memory="32Mi")
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    running = qemu_id(virt, dom)

    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(max_memory="64Mi"))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("True", "ChangesPending"))
    assert vm.status and vm.status.pending_changes == ["maxMemory"]
    cond = vm.condition(names.ConditionType.RESTART_REQUIRED)
    assert cond is not None and "maxMemory" in cond.message
    assert dom.maxMemory() == 32 * 1024 and qemu_id(virt, dom) == running  # not restarted behind the user's back

    await patch(kube, namespace, name, metadata=MetadataPatch(annotations={names.RESTART_ANNOTATION: "r1"}))
    vm = await settles(
        kube,
        namespace,
        name,
        agent,
        lambda vm: vm.status.last_restart_request == "r1" and restart_required(vm) == ("False", "DefinitionCurrent"),
    )
    assert not vm.status or not vm.status.pending_changes
    assert dom.maxMemory() == 64 * 1024 and qemu_id(virt, dom) != running


def _domain_xml(vcpu: str, memory: int, current: int, bus: str, model: str, firmware: str = "") -> str:
    os_attrs = f" firmware='{firmware}'" if firmware else ""
    return (
        f"<domain><vcpu {vcpu}<memory>{memory}</memory><currentMemory>{current}</currentMemory>"
        f"<os{os_attrs}><type>hvm</type></os><devices>"
        f"<disk device='disk'><source file='/d/root.qcow2'/><target dev='vda' bus='{bus}'/>"
        "<alias name='ua-disk-root'/></disk>"
        f"<interface type='user'><mac address='52:54:00:00:00:01'/><model type='{model}'/>"
        "<alias name='ua-net-lan'/></interface></devices></domain>"
    )


def test_what_cannot_change_live_is_named_by_its_spec_field() -> None:
    running = _domain_xml("current='1'>2</vcpu>", 65536, 32768, "virtio", "virtio")
    wanted = _domain_xml("current='2'>4</vcpu>", 131072, 98304, "sata", "e1000", firmware="efi")
    changes = {c.field: c.step is not None for c in differences(running, wanted, LiveState(), {"root": (1, 2)})}
    assert changes == {
        "maxCpu": False,
        "cpu": True,  # 2 is within the 2 the instance was started with
        "maxMemory": False,
        "memory": False,  # 96 MiB is above the 64 MiB it was started with: only a restart gives it
        "firmware": False,
        "disks[root].bus": False,
        "networks[lan].model": False,
        "disks[root].size": True,
    }
    assert differences(running, running, LiveState(memory_kib=32768), {"root": (2, 1)}) == []  # never shrinks


async def test_a_removed_disk_the_guest_keeps_waits_for_the_restart(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    disks = [{"name": "root", "size": "16Mi"}, {"name": "data", "size": "16Mi"}]
    await place_vm(kube, namespace, name, agent.node_name, disks=disks)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    running = qemu_id(virt, dom)

    # No OS answers the unplug request: libvirt asks, the disk stays, and the VM says it goes at the next start.
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(disks=disks[:1]))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("True", "ChangesPending"))
    assert vm.status and vm.status.pending_changes == ["disks[data]"]
    cond = vm.condition(names.ConditionType.RESTART_REQUIRED)
    assert cond is not None and "the guest has not released it" in cond.message
    assert qemu_id(virt, dom) == running and vm.status.phase == "Running"

    await patch(kube, namespace, name, metadata=MetadataPatch(annotations={names.RESTART_ANNOTATION: "r1"}))
    vm = await settles(kube, namespace, name, agent, lambda vm: restart_required(vm) == ("False", "DefinitionCurrent"))
    assert "ua-disk-data" not in {el.get("name") for el in live(dom).iterfind("devices/disk/alias")}


async def test_a_stopped_vms_disk_grows_before_it_starts(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    made = await place_vm(
        kube, namespace, name, agent.node_name, run_strategy="Halted", disks=[{"name": "root", "size": "16Mi"}]
    )
    await reaches(kube, namespace, name, "Stopped", agent)
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(disks=[{"name": "root", "size": "32Mi"}]))
    await eventually(lambda: _has(kube, namespace, "Grew disk root to 33554432 bytes"), 60, "the DiskGrown Event")
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(run_strategy="Running"))
    vm = await reaches(kube, namespace, name, "Running", agent)
    assert domain_of(virt, vm).blockInfo("vda")[0] == 32 * MiB
    assert (agent.storage_dir / (made.metadata.uid or "") / "root.qcow2").exists()
