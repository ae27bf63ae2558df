"""The agent runs the Debian test guest with cloud-init and reports where to reach it (marker guest).

A real agent on a Testbed host runs a VM placed on its node (the operator's
placement stood in for, as in tests/agent): its disk a qcow2 overlay on the
staged image, a NIC on the host's NAT network, cloudInit with a hostname and
the test's SSH key. The test waits for status.addresses and AgentConnected,
then SSHes in and checks the hostname and the key: the seed the agent wrote
is what cloud-init applied, and the addresses are the guest agent's.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineSpec, names

from ..agent.conftest import place_vm, remove_domains
from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.guest import BOOT_TIMEOUT, SshKey, create_overlay, kvm_runs_linux, ssh, wait_for_ssh
from ..support.guesthost import GuestHost
from ..support.wait import eventually, wait_until

pytestmark = pytest.mark.guest


@pytest.fixture
def guest_agent(
    guest_host: GuestHost, control_plane: ControlPlane, namespace: str, kubectl: Kubectl
) -> Iterator[AgentProcess]:
    """An agent of its own node on the Testbed host; its VMs' domains and finalizers removed afterwards."""
    folder = guest_host.folder / f"agent-{uuid.uuid4().hex[:6]}"
    folder.mkdir(mode=0o755)
    agent = AgentProcess(
        control_plane.kubeconfig,
        f"vtest-guest-{uuid.uuid4().hex[:6]}",
        folder / "state",
        lease_namespace=namespace,
        libvirt_uri=guest_host.host.uri,
        extra_args=("--domain-type", "kvm" if kvm_runs_linux() else "qemu", *guest_host.host.agent_args()),
        image_dirs=(folder,),
    )
    try:
        yield agent.start()
    finally:
        agent.stop()
        unfinalized = '{"metadata":{"finalizers":null}}'
        for obj in kubectl("get", "vvm", "-n", namespace, "-o", "name", check=False).stdout.split():
            kubectl("patch", "-n", namespace, obj, "--type=merge", "-p", unfinalized, check=False)
        remove_domains(guest_host.conn, f"{namespace}_")
        kubectl("delete", "--ignore-not-found", "--wait=false", f"hosts.vapor.io/{agent.node_name}", check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(1500)
async def test_the_agent_boots_the_guest_with_cloud_init_and_reports_its_agents_addresses(
    guest_host: GuestHost, guest_agent: AgentProcess, guest_key: SshKey, control_plane: ControlPlane, namespace: str
) -> None:
    hostname = f"vg-{uuid.uuid4().hex[:8]}"
    overlay = guest_agent.state_dir.parent / "root.qcow2"
    create_overlay(guest_host.base, overlay)
    kube = await Kube.connect(str(control_plane.kubeconfig))
    try:
        await _run_the_guest(kube, guest_host, guest_agent, guest_key, namespace, hostname, overlay)
    finally:
        await kube.close()


async def _status_when(
    kube: Kube, namespace: str, agent: AgentProcess, what: str, check: Callable[[VirtualMachine], bool]
) -> VirtualMachine:
    async def probe() -> VirtualMachine | None:
        vm = await kube.resources(VirtualMachine).get("guest", namespace)
        return vm if check(vm) else None

    try:
        return await eventually(probe, BOOT_TIMEOUT, what)  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


def _agent_says(vm: VirtualMachine, status: str) -> bool:
    connected = vm.condition(names.ConditionType.AGENT_CONNECTED)
    return connected is not None and connected.status == status


async def _run_the_guest(
    kube: Kube,
    guest_host: GuestHost,
    guest_agent: AgentProcess,
    guest_key: SshKey,
    namespace: str,
    hostname: str,
    overlay: Path,
) -> None:
    await place_vm(
        kube,
        namespace,
        "guest",
        guest_agent.node_name,
        memory="512Mi",
        disks=[{"name": "root", "path": str(overlay)}],
        networks=[{"name": "nic0", "type": "network", "source": guest_host.network.name}],
        cloud_init={"hostname": hostname, "ssh_authorized_keys": [guest_key.public]},
    )

    vm = await _status_when(
        kube,
        namespace,
        guest_agent,
        "the guest agent's addresses in the VM's status",
        lambda vm: bool(vm.status and vm.status.addresses) and _agent_says(vm, "True"),
    )

    assert vm.status is not None and vm.status.addresses and vm.status.interfaces
    address = next(a for a in vm.status.addresses if guest_host.network.contains(a))
    nic = next(i for i in vm.status.interfaces if any(a.startswith(address + "/") for a in i.addresses))
    assert nic.source == "agent" and nic.name and nic.name != "lo" and nic.mac
    assert all(i.name != "lo" for i in vm.status.interfaces)
    assert not any(a.startswith(("127.", "fe80:", "::1")) for a in vm.status.addresses)

    netns = guest_host.host.netns
    assert wait_for_ssh(address, guest_key, netns=netns, timeout=BOOT_TIMEOUT) == hostname
    # Asked again while it fails: cloud-init may still restart sshd right after the first login answered.
    who = wait_until(
        lambda: (
            (done := ssh(address, guest_key, "id -un; cat ~/.ssh/authorized_keys", netns=netns)).returncode == 0
            and done
        ),
        60,
        what="the guest's user and keys over SSH",
    )
    user, *keys = who.stdout.splitlines()
    assert user == "debian" and guest_key.public in keys

    # The guest agent goes away: libvirt's event says so at once; the DHCP lease still gives the address.
    ssh(address, guest_key, "sudo systemctl stop qemu-guest-agent", netns=netns)
    vm = await _status_when(
        kube,
        namespace,
        guest_agent,
        "the lease's address once the guest agent is gone",
        lambda vm: _agent_says(vm, "False") and bool(vm.status and vm.status.interfaces),
    )
    assert vm.status is not None and vm.status.interfaces and vm.status.addresses == [address]
    lease = vm.status.interfaces[0]
    assert lease.source == "lease" and lease.name is None and lease.mac == nic.mac

    # Stopped: nothing runs to have addresses or an agent.
    stop = MetadataPatch(annotations={names.STOP_MODE_ANNOTATION: "force"})
    await kube.resources(VirtualMachine).patch(
        "guest", metadata=stop, spec=VirtualMachineSpec.partial(run_strategy="Halted"), namespace=namespace,
        field_manager="test-user",
    )  # fmt: skip
    vm = await _status_when(
        kube,
        namespace,
        guest_agent,
        "the VM stopped, its addresses cleared",
        lambda vm: vm.phase == "Stopped" and not (vm.status and vm.status.addresses),
    )
    assert vm.status is not None and not vm.status.interfaces
    assert vm.condition(names.ConditionType.AGENT_CONNECTED) is None
