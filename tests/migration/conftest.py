"""Two real libvirt hosts (tests/support/hosts.py), an agent on each, the real operator, one control plane.

Every component is a real process: the agents reach their host's libvirtd
through its socket and publish the host's address as their migration
address; the libvirt daemons migrate domains to each other over the
testbed's own bridge, over qemu+tls with certificates from the testbed's CA
unless a test makes a testbed of its own (``make_cluster``). VMs ask for their first host with spec.host and the
operator places them there.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from vapor.devenv import ControlPlane
from vapor.model.names import LEASE_NAMESPACE

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.hosts import Host, Testbed
from ..support.processes import ComponentProcess, operator_process
from ..support.wait import wait_until

# A boot sector that rewrites 512 KiB of guest memory (0x10000-0x8ffff) in a loop, with a pass counter:
# a guest whose memory never stops changing, so a throttled live migration cannot converge on its own.
TERMINAL = ("Succeeded", "Failed", "Cancelled")
DIRTY_LOOP = bytes.fromhex("FA31DBB800108EC031FFB900805089D8F3AB580500103D009072EB43EBE5")
# A boot sector that halts for good (cli; hlt; jmp back to hlt) and carries MARKER: a guest whose memory
# holds these bytes and never changes, so its migration converges at once.
MARKER = b"vapor-guest-memory-marker:5f1c0e7a9b3d"
_HALT = bytes.fromhex("FAF4EBFD") + MARKER
# A boot sector that enters unreal mode, fills 48 MiB of guest memory from 1 MiB with FILL_WORD and halts: a
# still guest with that much to copy, so a migration at a few MiB/s takes seconds and converges.
_FILL = bytes.fromhex(
    "fa31c08ed8660f0116587c0f20c00c010f22c0bb08008ec324fe0f22c031c08ec0e4920c02e69266bf0000100066b90000c000"
    "66b8a5a55a5afc6766f3abf4ebfd8db400008d74000000000000000000ffff00000092cf000f00487c0000"
)
FILL_WORD = bytes.fromhex("a5a55a5a")
FILL_END = 0x100000 + (48 << 20)


def _boot_image(path: Path, code: bytes) -> Path:
    path.write_bytes((code + bytes(510 - len(code)) + b"\x55\xaa").ljust(1 << 20, b"\0"))
    path.chmod(0o644)
    return path


@dataclass
class Cluster:
    """The testbed, its agents and the operator."""

    testbed: Testbed
    agents: list[AgentProcess]
    operator: ComponentProcess
    nodes: list[str]
    conns: list[libvirt.virConnect]
    boot_image: Path
    kubectl: Kubectl
    operators: list[ComponentProcess]  # operator first; with replicas > 1 the peered replicas, highest priority first

    def domain(self, index: int, name: str) -> libvirt.virDomain | None:
        """The domain ``name`` on host ``index``, or None."""
        try:
            return self.conns[index].lookupByName(name)
        except libvirt.libvirtError:
            return None

    def running_on(self, name: str) -> list[int]:
        """Indexes of the hosts where the domain ``name`` runs."""
        return [i for i in range(len(self.conns)) if (d := self.domain(i, name)) is not None and d.isActive()]

    def vm(self, namespace: str, name: str) -> dict[str, Any]:
        return self.kubectl.get_json("vvm", name, "-n", namespace)

    def migration(self, namespace: str, name: str) -> dict[str, Any]:
        return self.kubectl.get_json("migrations.vapor.io", name, "-n", namespace)

    def place_vm(self, namespace: str, name: str, host: int, **spec: Any) -> None:
        """A VM the operator places on host ``index`` (spec.host), running unless told otherwise."""
        manifest = {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"runStrategy": "Running", "memory": "64Mi", "cpu": 1, "host": self.nodes[host], **spec},
        }
        self.kubectl.apply(manifest)

    @staticmethod
    def _booting(disk: Path) -> dict[str, Any]:
        """Spec fields of a VM that boots ``disk`` read-only (a boot image both hosts see)."""
        return {"disks": [{"name": "boot", "path": str(disk), "readOnly": True, "bootOrder": 1}]}

    def marker_vm_spec(self) -> dict[str, Any]:
        """Spec fields of a VM whose memory holds MARKER and stays still (it halts at once)."""
        return self._booting(self.boot_image.with_name("marker.img"))

    def dirty_vm_spec(self) -> dict[str, Any]:
        """Spec fields of a VM that boots the memory-dirtying loop."""
        return self._booting(self.boot_image)

    def filled_vm_spec(self) -> dict[str, Any]:
        """Spec fields of a VM that fills 48 MiB of its memory and halts (wait_filled: it is done)."""
        return self._booting(self.boot_image.with_name("filled.img"))

    def wait_filled(self, dom: str, host: int = 0) -> None:
        """Wait until the filling guest ``dom`` on host ``host`` wrote its last word."""
        domain = self.domain(host, dom)
        assert domain is not None, f"no domain {dom} on host {host}"
        last = (FILL_END - 4, 4, libvirt.VIR_MEMORY_PHYSICAL)
        wait_until(lambda: domain.memoryPeek(*last) == FILL_WORD, 60, what="guest memory filled")

    def migrate(self, namespace: str, name: str, vm: str, host: int, **spec: Any) -> None:
        self.kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "Migration",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"vmName": vm, "destinationHost": self.nodes[host], **spec},
            }
        )

    def phase(self, namespace: str, name: str) -> str | None:
        return (self.migration(namespace, name).get("status") or {}).get("phase")

    def running_vm(self, namespace: str, name: str, host: int, **spec: Any) -> str:
        """Place a VM on host ``host`` and wait until it runs there; its domain's name."""
        self.place_vm(namespace, name, host, **spec)
        dom = f"{namespace}_{name}"
        wait_until(lambda: self.running_on(dom) == [host], 60, what="domain running on the source")
        wait_until(lambda: (self.vm(namespace, name).get("status") or {}).get("phase") == "Running", 60, what="VM")
        return dom

    def wait_dirtying(self, dom: str, host: int = 0) -> None:
        """Wait until the dirty-loop guest ``dom`` on host ``host`` runs (its pass counter in guest memory moves)."""
        domain = self.domain(host, dom)
        assert domain is not None, f"no domain {dom} on host {host}"
        counter = (0x10000, 2, libvirt.VIR_MEMORY_PHYSICAL)
        wait_until(lambda: domain.memoryPeek(*counter) != b"\0\0", 60, what="guest loop running")

    def end(self, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the Migration ends; its status."""
        try:
            wait_until(lambda: self.phase(namespace, name) in TERMINAL, timeout, what=f"{name} ends")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.migration(namespace, name)}\n{self.logs()}") from exc
        return dict(self.migration(namespace, name)["status"])

    def clean(self, namespace: str) -> None:
        """Delete the namespace's Migrations and VMs while the agents run, and any domain left."""
        self.kubectl("delete", "migrations.vapor.io", "--all", "-n", namespace, "--timeout=30s", check=False)
        self.kubectl("delete", "vvm", "--all", "-n", namespace, "--timeout=60s", check=False)
        for conn in self.conns:
            for dom in conn.listAllDomains(0):
                if dom.name().startswith(f"{namespace}_"):
                    try:
                        if dom.isActive():
                            dom.destroy()
                        dom.undefine()
                    except libvirt.libvirtError:
                        pass

    def logs(self) -> str:
        agents = "\n".join(f"--- agent {a.node_name}\n" + "\n".join(a.log().splitlines()[-40:]) for a in self.agents)
        return f"--- operator\n{self.operator.tail(40)}\n{agents}"


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Cluster]:
    """Two hosts that migrate over qemu+tls (the default), with certificates from one CA."""
    with make_cluster(control_plane, kubectl, Testbed(2)) as made:
        yield made


@contextlib.contextmanager
def make_cluster(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    testbed: Testbed,
    *,
    replicas: int = 1,
    operator_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start ``testbed``, an agent on each of its hosts and the operator; remove all of it after.

    ``replicas`` > 1: that many operators peered as the chart runs them (``--peering``, the peering CRDs
    applied first by the caller), with priorities 100 * (replicas - index): the first one acts.
    ``operator_env``: settings for the operators, over the tests' fast loops.
    """
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # failures reach the tests as exceptions
    run = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="vapor-mig-", dir="/var/tmp"))  # QEMU must reach the boot image
    state.chmod(0o755)
    boot = _boot_image(state / "dirty-loop.img", DIRTY_LOOP)
    _boot_image(state / "marker.img", _HALT)
    _boot_image(state / "filled.img", _FILL)
    kubeconfig = str(control_plane.kubeconfig)
    procs: list[Any] = []
    conns: list[libvirt.virConnect] = []
    nodes = [f"mig-{run}-{i}" for i in range(len(testbed.hosts))]
    try:
        testbed.start()
        agents = []
        for host, node in zip(testbed.hosts, nodes, strict=True):
            agent = _agent(kubeconfig, node, state, host).start()
            procs.append(agent)
            agents.append(agent)
        operators = [
            operator_process(kubeconfig, state / f"operator-{i}.log", operator_env, _peered(i, replicas)).start()
            for i in range(replicas)
        ]
        procs += operators
        conns = [h.connect() for h in testbed.hosts]
        for node in nodes:
            wait_until(lambda n=node: _ready(kubectl, n), 90, what=f"Host {node} Ready")
        yield Cluster(testbed, agents, operators[0], nodes, conns, boot, kubectl, operators)
    finally:
        for conn in conns:
            conn.close()
        for proc in reversed(procs):
            proc.stop()
        kubectl("delete", "hosts.vapor.io", *nodes, "--ignore-not-found", "--wait=false", check=False)
        testbed.close()
        shutil.rmtree(state, ignore_errors=True)


def _peered(index: int, replicas: int) -> tuple[str, ...]:
    return ("--peering", "--priority", str(100 * (replicas - index))) if replicas > 1 else ()


def _agent(kubeconfig: str, node: str, state: Path, host: Host) -> AgentProcess:
    return AgentProcess(
        kubeconfig,
        node,
        state / node,
        lease_namespace=LEASE_NAMESPACE,
        libvirt_uri=host.uri,
        lease_renew_interval=1.0,
        extra_args=("--lease-duration", "5", *host.agent_args()),
        env={"VAPOR_API_BIND": ""},  # no node-local API: two agents on one machine
        image_dirs=(state,),  # the boot image both hosts share
    )


def _ready(kubectl: Kubectl, node: str) -> bool:
    got = kubectl("get", "hosts.vapor.io", node, "-o", "json", check=False)
    if got.returncode != 0:
        return False
    import json

    status = json.loads(got.stdout).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return bool(ready and ready[0].get("status") == "True" and (status.get("hypervisor") or {}).get("migrationAddress"))


@pytest.fixture
def vms(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The test's namespace; afterwards its VMs are deleted while the agents run, and any domain left removed."""
    yield namespace
    cluster.clean(namespace)
