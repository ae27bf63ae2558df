"""Fixtures of the agent tests: a real libvirtd, the agent as a real process, VMs placed on its node.

The agent runs as ``python -m vapor.agent`` against the session's control
plane and the machine's libvirtd (started here when none runs), with a
unique node name and a temporary state folder. Test VMs live in the test's
own namespace and are named ``vtest-...``, so their domains are named
``<namespace>_vtest-...``: teardown destroys and undefines every domain of
the test's namespace, even when the test failed.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from vapor.devenv import ControlPlane
from vapor.kube import Kube, NotFound
from vapor.model import Host, ObjectMeta, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus, names

from ..conftest import Kubectl
from ..support.agent import AgentProcess, qemu_reachable_dir
from ..support.libvirtd import Libvirtd


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    """A real libvirtd + virtlogd (the running one, or started for the session)."""
    daemon = Libvirtd().start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def virt(libvirtd: Libvirtd) -> Iterator[libvirt.virConnect]:
    """The test's own libvirt connection, to check what the agent did."""
    conn = libvirt.open(libvirtd.uri)
    yield conn
    conn.close()


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    k = await Kube.connect(str(control_plane.kubeconfig))
    yield k
    await k.close()


@pytest.fixture
def node_name() -> str:
    return f"vtest-node-{uuid.uuid4().hex[:8]}"


def remove_domains(conn: libvirt.virConnect, prefix: str) -> None:
    """Destroy and undefine every domain whose name starts with ``prefix``."""
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(prefix):
            continue
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA  # a domain with snapshots is not undefined without
            )
        except libvirt.libvirtError:
            pass


@pytest.fixture
def qemu_tmp() -> Iterator[Path]:
    """A temporary folder QEMU (which runs as its own user) can reach; pytest's tmp_path is root-only."""
    path = qemu_reachable_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent_factory(
    control_plane: ControlPlane,
    libvirtd: Libvirtd,
    virt: libvirt.virConnect,
    kubectl: Kubectl,
    namespace: str,
    qemu_tmp: Path,
) -> Iterator[Callable[..., AgentProcess]]:
    """Makes agents for this test (Lease in the test's namespace); cleans up their Hosts, VMs and domains.

    ``kubeconfig``: another way to the session's control plane than its admin kubeconfig.
    """
    made: list[AgentProcess] = []

    def make(node: str, *, kubeconfig: Path | None = None, **kwargs: Any) -> AgentProcess:
        agent = AgentProcess(
            kubeconfig or control_plane.kubeconfig,
            node,
            qemu_tmp / node,
            lease_namespace=namespace,
            libvirt_uri=libvirtd.uri,
            **{"image_dirs": (qemu_tmp,), **kwargs},  # the test's own images are in qemu_tmp
        )
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()
    # Without a running agent the finalizers would hold the test's VMs, snapshots (and namespace) forever.
    listed = kubectl("get", "vvm,vsnap", "-n", namespace, "-o", "name", check=False).stdout.split()
    for obj in listed:
        kubectl("patch", "-n", namespace, obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    remove_domains(virt, f"{namespace}_")
    hosts = [f"hosts.vapor.io/{a.node_name}" for a in made]
    if hosts:
        kubectl("delete", "--ignore-not-found", "--wait=false", *hosts, check=False)


@pytest.fixture
def agent(agent_factory: Callable[..., AgentProcess], node_name: str) -> AgentProcess:
    """A started agent for a fresh node."""
    return agent_factory(node_name).start()


async def place_vm(
    kube: Kube,
    namespace: str,
    name: str,
    node: str,
    *,
    run_strategy: str = "Running",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> VirtualMachine:
    """Create a VM already placed on ``node``.

    Stands in for the operator's placement: the host label and status.host are
    what the operator writes when it places a VM.
    """
    vm = VirtualMachine(
        metadata=ObjectMeta(
            name=name, namespace=namespace, labels={names.HOST_LABEL: node}, annotations=annotations or None
        ),
        spec=VirtualMachineSpec(run_strategy=run_strategy, **{"memory": "32Mi", **spec}),
    )
    vms = kube.resources(VirtualMachine)
    made = await vms.create(vm, field_manager="test-operator-stand-in")
    await vms.patch_status(
        name, VirtualMachineStatus(host=node), namespace=namespace, field_manager="test-operator-stand-in"
    )
    return made


async def host_of(kube: Kube, node: str) -> Host | None:
    try:
        return await kube.resources(Host).get(node)
    except NotFound:
        return None
