"""The gateway against the session's real control plane, with real Linux users checked by real PAM.

Each test gets its own users and groups (removed after), its own namespace for
the gateway's Secrets (signing key, refresh-token families) and a gateway app
started through Quart's test harness, which runs the real startup: the
Kubernetes connection, the signing key and the watch caches.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.gateway import create_app
from vapor.kube import Kube
from vapor.model import VirtualMachine

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
        "RATE_LIMIT": 0,  # many requests from one address; the limit has its own test
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
        await self.vms.patch_status(name, status, namespace=namespace, field_manager=self.FIELD_MANAGER)
