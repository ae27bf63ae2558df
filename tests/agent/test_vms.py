"""The agent runs the VirtualMachines placed on its node through real libvirtd and QEMU.

Each test creates its VMs already placed on the agent's node (label and
status.host), standing in for the operator's placement, and checks the real
domain through its own libvirt connection, as a person would with virsh.
"""

from __future__ import annotations

import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from vapor.kube import Kube, NotFound
from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineSpec, names

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm

VAPOR_NS = "https://vapor.io/xmlns/domain/v1alpha1"


def vm_name() -> str:
    return f"vtest-{uuid.uuid4().hex[:6]}"


async def vm_status(kube: Kube, namespace: str, name: str) -> VirtualMachine:
    return await kube.resources(VirtualMachine).get(name, namespace)


async def reaches(
    kube: Kube, namespace: str, name: str, phase: str, agent: AgentProcess, timeout: float = 60
) -> VirtualMachine:
    async def probe() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        return vm if vm.status and vm.status.phase == phase else None

    try:
        return await eventually(probe, timeout, f"{name} to reach {phase}")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


def domain_of(virt: libvirt.virConnect, vm: VirtualMachine) -> libvirt.virDomain:
    assert vm.status and vm.status.domain_uuid
    return virt.lookupByUUIDString(vm.status.domain_uuid)


def qemu_id(virt: libvirt.virConnect, dom: libvirt.virDomain) -> int:
    """The running instance's id, as `virsh list` shows it (a handle caches its id: look it up afresh)."""
    return int(virt.lookupByUUIDString(dom.UUIDString()).ID())


def state(dom: libvirt.virDomain) -> int:
    return int(dom.state()[0])


def ready(vm: VirtualMachine) -> tuple[str, str]:
    cond = next(c for c in (vm.status.conditions if vm.status else None) or [] if c.type == "Ready")
    return cond.status, cond.reason


async def reasons(kube: Kube, namespace: str, name: str, reason: str, count: int) -> bool:
    """Whether at least ``count`` Events with ``reason`` were recorded about the VM ``name``."""
    events = await kube.core.list_namespaced_event(namespace)
    return [e.reason for e in events.items if e.involved_object.name == name].count(reason) >= count


async def patch(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    metadata: MetadataPatch | None = None,
    spec: VirtualMachineSpec | None = None,
) -> None:
    """A user's merge patch of the VM."""
    await kube.resources(VirtualMachine).patch(
        name, metadata=metadata, spec=spec, namespace=namespace, field_manager="test-user"
    )


async def test_a_placed_vm_is_defined_and_runs(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    made = await place_vm(kube, namespace, name, agent.node_name, cpu=1, disks=[{"name": "root", "size": "64Mi"}])
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING  # what `virsh domstate` shows
    assert dom.name() == f"{namespace}_{name}"
    meta = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VAPOR_NS))
    assert meta.get("uid") == made.metadata.uid and meta.get("namespace") == namespace
    assert dom.maxMemory() == 32 * 1024 and dom.maxVcpus() == 1
    disk = agent.storage_dir / (made.metadata.uid or "") / "root.qcow2"
    assert disk.exists() and disk.read_bytes()[:4] == b"QFI\xfb"
    info = subprocess.run(["qemu-img", "info", "-U", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "64 MiB" in info
    assert names.VM_FINALIZER in (vm.metadata.finalizers or [])
    assert ready(vm) == ("True", "Running")
    assert vm.status and vm.status.observed_generation == vm.metadata.generation
    assert vm.status.host == agent.node_name  # the operator's field is left as it was


async def test_pause_resume_and_restart_act_on_the_domain(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)

    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(run_strategy="Paused"))
    vm = await reaches(kube, namespace, name, "Paused", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_PAUSED and ready(vm) == ("True", "Paused")

    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(run_strategy="Running"))
    vm = await reaches(kube, namespace, name, "Running", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING

    before = qemu_id(virt, dom)  # the running instance; a power cycle gives a new one
    await patch(kube, namespace, name, metadata=MetadataPatch(annotations={names.RESTART_ANNOTATION: "r1"}))

    async def restarted() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        return vm if vm.status and vm.status.last_restart_request == "r1" else None

    vm = await eventually(restarted, 60, "the restart")
    assert qemu_id(virt, dom) != before and state(dom) == libvirt.VIR_DOMAIN_RUNNING
    assert vm.status.phase == "Running" and vm.status.domain_uuid == dom.UUIDString()


async def test_graceful_stop_powers_off_after_the_grace_period(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    # No guest OS answers the ACPI button here, so the grace period ends in a power-off.
    await place_vm(kube, namespace, name, agent.node_name, graceful_shutdown_seconds=2)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(run_strategy="Halted"))
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF and ready(vm) == ("True", "Stopped")
    # Asked the guest first, then powered off (the Events are what `kubectl describe` shows).
    assert await eventually(lambda: reasons(kube, namespace, name, "Stopping", 1), 30, "a Stopping event")
    assert await eventually(lambda: reasons(kube, namespace, name, "PoweredOff", 1), 30, "a PoweredOff event")


async def test_force_stop_powers_off_at_once(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    # An hour of grace: only a forced stop can end this domain within the test.
    await place_vm(kube, namespace, name, agent.node_name, graceful_shutdown_seconds=3600)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    await patch(
        kube,
        namespace,
        name,
        metadata=MetadataPatch(annotations={names.STOP_MODE_ANNOTATION: "force"}),
        spec=VirtualMachineSpec.partial(run_strategy="Halted"),
    )
    await reaches(kube, namespace, name, "Stopped", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF


async def test_a_run_strategy_set_with_kubectl_has_the_same_effect(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect, kubectl: Kubectl
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name, run_strategy="Halted")
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    dom = domain_of(virt, vm)
    assert state(dom) == libvirt.VIR_DOMAIN_SHUTOFF  # defined, not started
    kubectl("patch", "vvm", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"runStrategy":"Running"}}')
    await reaches(kube, namespace, name, "Running", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING
    kubectl("patch", "vvm", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"runStrategy":"Paused"}}')
    await reaches(kube, namespace, name, "Paused", agent)
    assert state(dom) == libvirt.VIR_DOMAIN_PAUSED
    out = kubectl("get", "vvm", name, "-n", namespace).stdout
    assert "Paused" in out


async def test_deleting_a_vm_removes_its_domain_and_created_disk_but_not_a_users_disk(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect, qemu_tmp: Path, kubectl: Kubectl
) -> None:
    name = vm_name()
    users = qemu_tmp / "user-disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(users), "16M"], check=True)
    made = await place_vm(
        kube,
        namespace,
        name,
        agent.node_name,
        disks=[{"name": "root", "size": "16Mi"}, {"name": "data", "path": str(users)}],
    )
    vm = await reaches(kube, namespace, name, "Running", agent)
    domain_uuid = vm.status.domain_uuid if vm.status else None
    created = agent.storage_dir / (made.metadata.uid or "")
    assert (created / "root.qcow2").exists()
    kubectl("delete", "vvm", name, "-n", namespace, "--timeout=60s")  # waits until the finalizer is gone
    try:
        virt.lookupByUUIDString(domain_uuid)
        raise AssertionError("the domain is still defined")
    except libvirt.libvirtError as exc:
        assert exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert not created.exists()
    assert users.exists()
    try:
        await vm_status(kube, namespace, name)
        raise AssertionError("the VM still exists")
    except NotFound:
        pass


async def test_a_restarted_agent_adopts_its_running_domains(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    running, halted = vm_name(), vm_name()
    await place_vm(kube, namespace, running, agent.node_name)
    await place_vm(kube, namespace, halted, agent.node_name, run_strategy="Halted")
    vm = await reaches(kube, namespace, running, "Running", agent)
    await reaches(kube, namespace, halted, "Stopped", agent)
    dom = domain_of(virt, vm)
    before = qemu_id(virt, dom)
    assert agent.stop() == 0
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING  # a stopped agent leaves its VMs running
    agent.start()
    # The new agent has caught up once it reacts to a change made after its restart.
    await patch(kube, namespace, halted, spec=VirtualMachineSpec.partial(run_strategy="Running"))
    await reaches(kube, namespace, halted, "Running", agent)
    after = await vm_status(kube, namespace, running)
    assert after.status and after.status.phase == "Running"
    assert after.status.domain_uuid == dom.UUIDString()
    assert qemu_id(virt, dom) == before and state(dom) == libvirt.VIR_DOMAIN_RUNNING  # the same QEMU, never restarted
    ours = [d for d in virt.listAllDomains(0) if d.name().startswith(f"{namespace}_")]
    assert sorted(d.name() for d in ours) == sorted(f"{namespace}_{n}" for n in (running, halted))


async def test_a_vm_of_another_node_is_ignored(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    theirs, mine = vm_name(), vm_name()
    await place_vm(kube, namespace, theirs, "vtest-some-other-node")
    await place_vm(kube, namespace, mine, agent.node_name)
    await reaches(kube, namespace, mine, "Running", agent)  # the agent has seen everything up to here
    other = await vm_status(kube, namespace, theirs)
    assert other.status and other.status.phase is None and not other.status.domain_uuid
    assert names.VM_FINALIZER not in (other.metadata.finalizers or [])
    try:
        virt.lookupByName(f"{namespace}_{theirs}")
        raise AssertionError("a domain was defined for another node's VM")
    except libvirt.libvirtError as exc:
        assert exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


async def test_cpu_and_memory_changes_apply_to_the_next_boot(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(cpu=2, memory="48Mi"))

    async def redefined() -> bool:
        vm = await vm_status(kube, namespace, name)
        return bool(vm.status and vm.status.observed_generation == vm.metadata.generation)

    await eventually(redefined, 60, "the new generation to be observed")
    persistent = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert persistent.findtext("vcpu") == "2" and persistent.findtext("memory") == str(48 * 1024)
    live = ET.fromstring(dom.XMLDesc(0))
    assert live.findtext("vcpu") == "1"  # the running instance keeps what it booted with
    assert state(dom) == libvirt.VIR_DOMAIN_RUNNING


async def test_the_domain_is_built_from_the_spec(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect, qemu_tmp: Path
) -> None:
    name = vm_name()
    image = qemu_tmp / "raw.img"
    image.write_bytes(b"\0" * 2**20)
    await place_vm(
        kube,
        namespace,
        name,
        agent.node_name,
        run_strategy="Halted",
        cpu=2,
        memory="40Mi",
        disks=[
            {"name": "root", "size": "8Mi", "bootOrder": 1},
            {"name": "seed", "path": str(image), "bus": "scsi", "readOnly": True},
        ],
        networks=[
            {"name": "lan", "type": "bridge", "source": "vtest-br0", "mac": "52:54:00:aa:bb:cc", "model": "e1000"},
            {"name": "out", "type": "user"},
        ],
    )
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    xml = ET.fromstring(domain_of(virt, vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert xml.get("type") in ("kvm", "qemu")
    assert xml.findtext("vcpu") == "2" and xml.findtext("memory") == str(40 * 1024)
    disks = {d.find("target").get("dev"): d for d in xml.findall("devices/disk")}  # type: ignore[union-attr]
    assert set(disks) == {"vda", "sda"}
    assert disks["vda"].find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disks["vda"].find("boot").get("order") == "1"  # type: ignore[union-attr]
    assert disks["sda"].find("source").get("file") == str(image)  # type: ignore[union-attr]
    assert disks["sda"].find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert disks["sda"].find("readonly") is not None
    nics = xml.findall("devices/interface")
    assert [n.get("type") for n in nics] == ["bridge", "user"]
    assert nics[0].find("source").get("bridge") == "vtest-br0"  # type: ignore[union-attr]
    assert nics[0].find("mac").get("address") == "52:54:00:aa:bb:cc"  # type: ignore[union-attr]
    assert nics[0].find("model").get("type") == "e1000"  # type: ignore[union-attr]


async def test_a_vm_that_cannot_be_made_is_failed_with_the_reason(
    kube: Kube, agent: AgentProcess, namespace: str, qemu_tmp: Path
) -> None:
    name = vm_name()
    missing = qemu_tmp / "no-such-image.qcow2"
    await place_vm(kube, namespace, name, agent.node_name, disks=[{"name": "data", "path": str(missing)}])
    vm = await reaches(kube, namespace, name, "Failed", agent)
    status, reason = ready(vm)
    assert (status, reason) == ("False", "DiskMissing")
    message = next(c.message for c in vm.status.conditions or [] if c.type == "Ready")  # type: ignore[union-attr]
    assert str(missing) in message
    assert await eventually(lambda: reasons(kube, namespace, name, "DiskMissing", 1), 30, "a DiskMissing event")


async def test_a_domain_stopped_behind_the_agents_back_is_started_again(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    before = qemu_id(virt, dom)
    dom.destroy()  # as `virsh destroy` would; only libvirt's lifecycle event tells the agent (resync is 5 min)

    async def running_again() -> bool:
        return state(dom) == libvirt.VIR_DOMAIN_RUNNING and qemu_id(virt, dom) != before

    await eventually(running_again, 60, "the agent to start the domain again")
    assert await eventually(lambda: reasons(kube, namespace, name, "Started", 2), 30, "a second Started event")


def libvirt_clients_of(pid: int) -> list[str]:
    """Ids of the libvirtd clients that process ``pid`` holds (through virt-admin)."""
    listed = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True, text=True, check=True)
    ids = [line.split()[0] for line in listed.stdout.splitlines()[2:] if line.strip()]
    mine = []
    for client in ids:
        info = subprocess.run(["virt-admin", "client-info", "libvirtd", client], capture_output=True, text=True)
        if f"unix_process_id: {pid}\n" in info.stdout + "\n":
            mine.append(client)
    return mine


async def test_the_agent_reconnects_when_libvirtd_drops_it(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name)
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    assert agent.proc is not None
    clients = libvirt_clients_of(agent.proc.pid)
    assert clients, "the agent holds no libvirt connection"
    for client in clients:  # what a libvirtd restart does to its clients, without restarting the shared daemon
        subprocess.run(["virt-admin", "client-disconnect", "libvirtd", client], check=True, capture_output=True)
    await eventually(lambda: agent.log().count('"connected to libvirt"') >= 2, 60, "the agent to reconnect")
    assert agent.running()
    # Events flow again on the new connection: a domain stopped outside Vapor is started again.
    before = qemu_id(virt, dom)
    dom.destroy()

    async def running_again() -> bool:
        return state(dom) == libvirt.VIR_DOMAIN_RUNNING and qemu_id(virt, dom) != before

    await eventually(running_again, 60, "the agent to start the domain again")
    after = await vm_status(kube, namespace, name)
    assert after.status and after.status.phase == "Running"


async def test_a_domain_vapor_did_not_make_is_never_touched(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect, kubectl: Kubectl
) -> None:
    name = vm_name()
    foreign = virt.defineXML(
        f"<domain type='qemu'><name>{namespace}_{name}</name><memory unit='MiB'>16</memory>"
        "<os><type>hvm</type></os></domain>"
    )  # someone's own domain that happens to carry the name the VM would get
    await place_vm(kube, namespace, name, agent.node_name)
    vm = await reaches(kube, namespace, name, "Failed", agent)
    assert ready(vm) == ("False", "DomainNameTaken")
    kubectl("delete", "vvm", name, "-n", namespace, "--timeout=60s")
    assert virt.lookupByName(f"{namespace}_{name}").UUIDString() == foreign.UUIDString()  # still there
