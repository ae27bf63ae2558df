"""The whole of Vapor as a user runs it: operator, one agent on a given libvirtd, gateway, PAM users.

``running_stack()`` starts every component as a real process against the
test control plane: the agent serves a node with a unique name (its Host
gets the label ``e2e-run=<run>`` that the test's VMs select, so nothing else
in the cluster can take them), and a real Linux admin and viewer log in
through PAM. tests/e2e runs it on a private libvirtd; tests/guest on a
Testbed host's libvirtd, whose NAT network the guests use.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libvirt

from vapor.devenv import ControlPlane
from vapor.model.names import LEASE_NAMESPACE

from ..conftest import Kubectl
from .agent import AgentProcess, qemu_reachable_dir
from .gatewayproc import api_client, gateway_for_users, login
from .guest import kvm_runs_linux
from .libvirtd import Libvirtd
from .pam import LinuxUser
from .processes import ComponentProcess, operator_process
from .wait import wait_until


@dataclass
class Stack:
    """The running system and how to reach it."""

    url: str
    node: str
    run: str
    agent: AgentProcess
    operator: ComponentProcess
    gateway: ComponentProcess
    admin: LinuxUser
    viewer: LinuxUser
    virt: libvirt.virConnect
    state: Path

    def login(self, user: LinuxUser) -> dict[str, Any]:
        return login(self.url, user)

    def client(self, user: LinuxUser) -> httpx.Client:
        return api_client(self.url, user)

    def logs(self) -> str:
        """The end of each component's log, for a failing test's report."""
        agent = "\n".join(self.agent.log_path.read_text(errors="replace").splitlines()[-30:])
        return f"--- operator\n{self.operator.tail(30)}\n--- gateway\n{self.gateway.tail(30)}\n--- agent\n{agent}"


@contextlib.contextmanager
def running_stack(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    libvirt_uri: str,
    *,
    agent_args: tuple[str, ...] = (),
    image_dirs: tuple[Path, ...] = (),
) -> Iterator[Stack]:
    """Operator, agent (on ``libvirt_uri``) and gateway as processes, until the block ends; all removed after."""
    run = f"r{uuid.uuid4().hex[:8]}"  # a letter first: never read as a number
    node = f"e2e-{run}"
    virt = libvirt.open(libvirt_uri)
    state = qemu_reachable_dir("vapor-e2e-")  # QEMU must reach the disks
    kubeconfig = str(control_plane.kubeconfig)
    procs: list[Any] = []
    try:
        with gateway_for_users(kubeconfig, state / "gateway.log") as gateway:
            try:
                agent = AgentProcess(
                    kubeconfig,
                    node,
                    state / "agent",
                    lease_namespace=LEASE_NAMESPACE,
                    libvirt_uri=libvirt_uri,
                    scan_interval=1.0,
                    lease_renew_interval=1.0,
                    extra_args=("--lease-duration", "5", *agent_args),
                    image_dirs=image_dirs,
                ).start()
                procs.append(agent)
                operator = operator_process(kubeconfig, state / "operator.log").start()
                procs.append(operator)
                wait_until(lambda: kubectl("get", "host", node, check=False).returncode == 0, 60, what="agent's Host")
                kubectl("label", "host", node, f"e2e-run={run}")
                yield Stack(
                    gateway.url,
                    node,
                    run,
                    agent,
                    operator,
                    gateway.process,
                    gateway.admin,
                    gateway.viewer,
                    virt,
                    state,
                )
            finally:
                for proc in reversed(procs):
                    proc.stop()
    finally:
        virt.close()
        kubectl("delete", "host", node, "--ignore-not-found", "--wait=false", check=False)
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def private_stack(control_plane: ControlPlane, kubectl: Kubectl, agent_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    """``running_stack`` on a libvirtd of its own (tests/e2e, tests/browser, tests/cli), stopped after.

    Its domains run under TCG where KVM cannot run a guest (kvm_runs_linux): on this
    machine's kvm_pvm, SeaBIOS writes nothing to the serial port of a KVM domain, and
    the console tests read its banner.
    """
    daemon = Libvirtd().start()
    try:
        with running_stack(control_plane, kubectl, daemon.uri, agent_args=(*domain_type_args(), *agent_args)) as s:
            yield s
    finally:
        daemon.stop()


def domain_type_args() -> tuple[str, ...]:
    """The agent's --domain-type for this machine: kvm where KVM runs a guest kernel, else qemu (TCG)."""
    return ("--domain-type", "kvm" if kvm_runs_linux() else "qemu")


@contextlib.contextmanager
def vm_namespace(stack: Stack, kubectl: Kubectl) -> Iterator[str]:
    """A namespace for one test's VMs; afterwards its VMs are deleted while the agent still runs
    (so their domains and disks go through the finalizer), and any domain left is removed."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        if stack.agent.running():
            kubectl("delete", "vvm", "--all", "-n", name, "--timeout=60s", check=False)
        for obj in kubectl("get", "vvm", "-n", name, "-o", "name", check=False).stdout.split():
            kubectl("patch", "-n", name, obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        for dom in stack.virt.listAllDomains(0):
            if dom.name().startswith(f"{name}_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        kubectl("delete", "namespace", name, "--wait=false", check=False)
