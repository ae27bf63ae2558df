"""Living with a VM (issue 15): one real Debian guest, booted once, shared by every day-2 test.

Booting the test guest takes 2 to 4 minutes under TCG (this machine's KVM
cannot run a guest kernel, see kvm_runs_linux), so the day-2 tests share one:
a whole stack (operator, agent, gateway as processes; tests/support/stack.py)
whose agent drives a Testbed host's libvirtd inside its own network namespace,
with a NAT network there; an Image of the test guest served over loopback
HTTP; and one VM made from it with ``kubectl apply`` (so the fields the REST
create does not take, maxCpu and maxMemory, are set too), with the test's SSH
key and a console password for ``debian`` given through cloud-init.

Package-scoped: made before the first day-2 test and removed after the last.
A test that changes the shared VM (stops, restores, resizes it) leaves it
Running and reachable over SSH when it ends; ``day2_vm.ensure_running()``
waits for that. Tests that need a VM of their own (a clone) make it in
``day2_vm.namespace`` and delete it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from ..support.guest import BOOT_TIMEOUT, GuestImage, ImageServer, SshKey, ssh, wait_for_cloud_init, wait_for_ssh
from ..support.guesthost import GuestHost, guest_stack, guest_testbed
from ..support.stack import Stack, vm_namespace
from ..support.wait import wait_until

VM_NAME = "day2"
HOSTNAME = "day2-guest"


@dataclass
class Day2VM:
    """The shared guest: where it runs, how to reach it, and its credentials."""

    stack: Stack
    kubectl: Kubectl
    guest_host: GuestHost
    image: str
    namespace: str
    name: str
    uid: str
    key: SshKey
    password: str  # the console password of user debian
    tokens: dict[bool, str] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        """The Testbed host's network namespace, where the guest's NAT network is."""
        return self.guest_host.host.netns

    def token(self, admin: bool = True) -> str:
        """A token of the stack's admin (or viewer), logged in once (logins are rate-limited per user)."""
        if admin not in self.tokens:
            self.tokens[admin] = self.stack.login(self.stack.admin if admin else self.stack.viewer)["token"]
        return self.tokens[admin]

    def api(self, admin: bool = True) -> httpx.Client:
        """A REST client with the admin's (or viewer's) token."""
        headers = {"Authorization": f"Bearer {self.token(admin)}"}
        return httpx.Client(base_url=f"{self.stack.url}/api/v1", headers=headers, timeout=60)

    def view(self) -> dict[str, Any]:
        """GET /api/v1/vms/{uid}: the VM as the gateway shows it."""
        with self.api() as api:
            r = api.get(f"/vms/{self.uid}")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def address(self) -> str:
        """The guest's first address, once Vapor reports one."""
        found = self.view().get("addresses") or []
        assert found, f"no address for {self.namespace}/{self.name}"
        return str(found[0])

    def ssh(self, command: str, *, timeout: float = 60.0, address: str | None = None) -> str:
        """Run ``command`` in the guest as debian; its stdout, stripped (fails the test on a non-zero exit)."""
        done = ssh(address or self.address(), self.key, command, netns=self.netns, timeout=timeout)
        assert done.returncode == 0, f"ssh {command!r}: {done.returncode} {done.stderr}"
        return done.stdout.strip()

    def power(self, action: str, *, force: bool = False) -> None:
        """POST /vms/{uid}/action (start, stop, restart), refused unless the gateway accepts it."""
        body: dict[str, Any] = {"action": action}
        if force:
            body["force"] = True
        with self.api() as api:
            r = api.post(f"/vms/{self.uid}/action", json=body)
        assert r.status_code in (200, 202), r.text

    def wait_phase(self, phase: str, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the VM's phase is ``phase``; its view then."""

        def reached() -> dict[str, Any] | None:
            vm = self.view()
            return vm if vm.get("phase") == phase else None

        return wait_until(reached, timeout, every=1, what=f"{self.name} {phase}\n{self.stack.logs()}")

    def ensure_running(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Start the VM if it is not running, wait for its address, SSH and cloud-init; the address."""
        if self.view().get("phase") != "Running":
            self.power("start")
        self.wait_phase("Running", timeout)

        def addressed() -> str | None:
            vm = self.view()
            return str(vm["addresses"][0]) if vm.get("addresses") else None

        address = wait_until(addressed, timeout, every=1, what=f"{self.name}'s address\n{self.stack.logs()}")
        wait_for_ssh(address, self.key, netns=self.netns, timeout=timeout)
        wait_for_cloud_init(address, self.key, netns=self.netns, timeout=timeout)
        return address


@pytest.fixture(scope="package")
def day2_host(guest_image: GuestImage) -> Iterator[GuestHost]:
    with guest_testbed(guest_image) as found:
        yield found


@pytest.fixture(scope="package")
def day2_stack(control_plane: ControlPlane, kubectl: Kubectl, day2_host: GuestHost) -> Iterator[Stack]:
    with guest_stack(control_plane, kubectl, day2_host) as stack:
        yield stack


@pytest.fixture(scope="package")
def day2_image(day2_stack: Stack, kubectl: Kubectl, guest_image: GuestImage) -> Iterator[str]:
    """An Image of the test guest, fetched by the stack's agent from a loopback HTTP server."""
    name = f"day2-{uuid.uuid4().hex[:8]}"
    with ImageServer(guest_image.path) as server, day2_stack.client(day2_stack.admin) as api:
        body = {"name": name, "source": {"http": {"url": server.url}}, "checksum": guest_image.sha256}
        r = api.post("/images", json={**body, "format": "qcow2"})
        assert r.status_code == 201, r.text
        try:
            yield name
        finally:
            kubectl("delete", "image", name, "--ignore-not-found", "--wait=false", check=False)


def _manifest(namespace: str, image: str, network: str, run: str, key: SshKey, password: str) -> dict[str, Any]:
    user_data = f"#cloud-config\npassword: {password}\nchpasswd:\n  expire: false\nssh_pwauth: false\n"
    return {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": VM_NAME, "namespace": namespace},
        "spec": {
            "runStrategy": "Running",
            "cpu": 1,
            "maxCpu": 2,
            "memory": "512Mi",
            "maxMemory": "1Gi",
            "disks": [{"name": "root", "image": image, "size": "4Gi"}],
            "networks": [{"name": "nic0", "type": "network", "source": network}],
            "cloudInit": {"hostname": HOSTNAME, "sshAuthorizedKeys": [key.public.strip()], "userData": user_data},
            "hostSelector": {"e2e-run": run},
        },
    }


@pytest.fixture(scope="package")
def day2_vm(
    day2_stack: Stack, kubectl: Kubectl, day2_host: GuestHost, day2_image: str, guest_key: SshKey
) -> Iterator[Day2VM]:
    """The shared guest, Running with an address and answering SSH as debian."""
    password = secrets.token_urlsafe(12)
    with vm_namespace(day2_stack, kubectl) as namespace:
        kubectl.apply(_manifest(namespace, day2_image, day2_host.network.name, day2_stack.run, guest_key, password))
        uid = kubectl("get", "vvm", VM_NAME, "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout.strip()
        vm = Day2VM(day2_stack, kubectl, day2_host, day2_image, namespace, VM_NAME, uid, guest_key, password)
        vm.ensure_running()
        assert vm.ssh("hostname") == HOSTNAME
        yield vm
