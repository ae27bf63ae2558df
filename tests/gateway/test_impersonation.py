"""Every REST write is made as the logged-in user, so Kubernetes RBAC decides (the gateway impersonates).

An admin of Vapor is, to the API server, ``<prefix><name>`` in the group
``<prefix>admins``. This test's gateway uses a prefix of its own, which no
binding of the cluster names, so its admin starts with no rights at all, the
way a cluster whose administrator turned ``vaporWritesClusterWide`` off looks:
the admin's writes are refused by Kubernetes, not by the gateway; a
RoleBinding for that user in one namespace lets them through there, and only
there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vapor.devenv.useraccess import VAPOR_ADMIN
from vapor.gateway import create_app

from ..conftest import Kubectl
from .conftest import Users, bearer, login

pytestmark = pytest.mark.controlplane


async def test_an_admins_writes_are_what_kubernetes_lets_that_user_do(
    gateway_config: dict[str, Any], users: Users, kubectl: Kubectl, namespace: str
) -> None:
    prefix = f"vtest-{uuid.uuid4().hex[:6]}:"
    async with create_app({**gateway_config, "IMPERSONATION_PREFIX": prefix}).test_app() as app:
        client = app.test_client()
        token = (await login(client, users.admin))["token"]
        vm = {"name": "web", "namespace": namespace, "cpu": 1, "memory": "64Mi", "run_strategy": "Halted"}
        response = await client.post("/api/v1/vms", json=vm, headers=bearer(token))
        body = await response.get_json()
        assert (response.status_code, body["status"]) == (403, "error"), body
        assert body["error"]["code"] == "PERMISSION_DENIED"
        assert f"{prefix}{users.admin.name}" in body["error"]["message"]
        assert kubectl("get", "virtualmachine", "web", "-n", namespace, check=False).returncode != 0
        # A RoleBinding for that user in this namespace: the same request goes through, as that user.
        kubectl(
            "create", "rolebinding", "vapor-writes", "-n", namespace,
            f"--clusterrole={VAPOR_ADMIN}", f"--user={prefix}{users.admin.name}",
        )  # fmt: skip
        response = await client.post("/api/v1/vms", json=vm, headers=bearer(token))
        assert response.status_code == 201, await response.get_json()
        stored = kubectl.get_json("virtualmachine", "web", "-n", namespace, "--show-managed-fields")
        assert any(f["manager"] == f"vapor-gateway:{users.admin.name}" for f in stored["metadata"]["managedFields"])
        response = await client.delete(f"/api/v1/vms/web?namespace={namespace}", headers=bearer(token))
        assert response.status_code == 200, await response.get_json()
        # Elsewhere the user still may not.
        other = {**vm, "namespace": "default", "name": f"web-{namespace}"}
        response = await client.post("/api/v1/vms", json=other, headers=bearer(token))
        assert response.status_code == 403, await response.get_json()
