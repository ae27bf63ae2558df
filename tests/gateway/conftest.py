"""The gateway against the session's real control plane, with real Linux users checked by real PAM.

Each test gets its own users and groups (removed after), its own namespace for
the gateway's Secrets (signing key, refresh-token families) and a gateway app
started through Quart's test harness, which runs the real startup: the
Kubernetes connection, the signing key and the watch caches.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component, free_port
from vapor.gateway import create_app
from vapor.kube import Kube
from vapor.model import VirtualMachine, VirtualMachineStatus

from ..conftest import Kubectl
from ..support.pam import LinuxUser, linux_accounts, pam_service


@dataclass(frozen=True)
class Users:
    """An admin (member of the test's admin group) and a viewer (no such group)."""

    admin: LinuxUser
    viewer: LinuxUser
    admin_group: str


@pytest.fixture
def pam_service_name() -> Iterator[str]:
    with pam_service() as name:
        yield name


@pytest.fixture
def users() -> Iterator[Users]:
    with linux_accounts() as accounts:
        group = accounts.group("adm")
        yield Users(admin=accounts.user("admin", groups=(group,)), viewer=accounts.user("viewer"), admin_group=group)


@pytest.fixture
def secret_namespace(kubectl: Kubectl) -> Iterator[str]:
    """Where this test's gateway keeps its Secrets (the gateway creates it)."""
    name = f"gw-{uuid.uuid4().hex[:10]}"
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def gateway_config(
    control_plane: ControlPlane, pam_service_name: str, users: Users, secret_namespace: str
) -> dict[str, Any]:
    return {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PAM_SERVICE": pam_service_name,
        "ADMIN_GROUPS": users.admin_group,
        "SECRET_NAMESPACE": secret_namespace,
        "TESTING": True,
        "RATE_LIMIT": 0,  # many requests from one address; the limits have their own tests
        "LOGIN_RATE_LIMIT": 0,
        "LOGIN_FAIL_DELAY": 0.1,  # refused passwords are answered soon; the delay and backoff have their own tests
    }


@pytest.fixture
async def app(gateway_config: dict[str, Any]) -> AsyncIterator[TestApp]:
    async with create_app(gateway_config).test_app() as test_app:
        yield test_app


@pytest.fixture
def client(app: TestApp) -> Client:
    return app.test_client()


@pytest.fixture(scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    """The test's own connection, for what a user would check with kubectl, and for stand-ins."""
    connection = await Kube.connect(str(control_plane.kubeconfig))
    yield connection
    await connection.close()


async def login(client: Client, user: LinuxUser) -> dict[str, Any]:
    """Log in and return ``data`` of the answer."""
    response = await client.post("/api/v1/auth/login", json={"username": user.name, "password": user.password})
    body = await response.get_json()
    assert response.status_code == 200, body
    return dict(body["data"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class StandInAgent:
    """FAKE AGENT. No agent runs in the gateway tests, so this stand-in writes a VM's status
    the way the host's agent would after carrying out an action (phase, restart acknowledgement).
    The real agent is covered end to end by the integration tests."""

    FIELD_MANAGER = "test-stand-in-agent"

    def __init__(self, kube: Kube) -> None:
        self.vms = kube.resources(VirtualMachine)

    async def report(self, name: str, namespace: str, **status: Any) -> None:
        written = VirtualMachineStatus.model_validate(status)  # camelCase keys, as the agent's wire form
        await self.vms.patch_status(name, written, namespace=namespace, field_manager=self.FIELD_MANAGER)


class GatewayProcess(Component):
    """``python -m vapor.gateway`` on a free loopback port, ready when its OpenAPI document answers."""

    def __init__(self, kubeconfig: Path, env: dict[str, str], log: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        super().__init__("vapor.gateway", ["--bind", f"127.0.0.1:{port}", "--kubeconfig", str(kubeconfig)], log, env)

    def start(self) -> GatewayProcess:
        super().start()
        deadline = time.monotonic() + 60  # a wait for readiness, not a measure of it
        while time.monotonic() < deadline and self.running():
            try:
                # The first answer builds the OpenAPI document: over 1 s on a busy machine.
                if httpx.get(f"{self.url}/openapi.json", timeout=10).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()  # never leave a half-started server behind
        raise AssertionError(f"gateway did not start: {self.tail()}")


@pytest.fixture
def server(control_plane: ControlPlane, gateway_config: dict[str, Any], tmp_path: Path) -> Iterator[GatewayProcess]:
    env = {
        f"VAPOR_{k}": str(v)
        for k, v in gateway_config.items()
        if k in ("PAM_SERVICE", "ADMIN_GROUPS", "SECRET_NAMESPACE")
    }
    process = GatewayProcess(control_plane.kubeconfig, env, tmp_path / "gateway.log")
    yield process.start()
    process.stop()
