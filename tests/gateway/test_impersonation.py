"""Every REST write is made as the logged-in user, so Kubernetes RBAC decides (the gateway impersonates).

An admin of Vapor is, to the API server, ``vapor:<name>`` in the group
``vapor:admins``; the control plane grants that group Vapor's writes in every
namespace, as the chart does by default (``vapor.devenv.useraccess``). Take
that grant away and the same admin's writes are refused by Kubernetes, not by
the gateway; give the user a RoleBinding in one namespace and they go through
there, and only there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.devenv.useraccess import VAPOR_ADMIN

from ..conftest import Kubectl
from .conftest import Users, bearer, login

pytestmark = pytest.mark.controlplane


@pytest.fixture
def no_cluster_wide_grant(kubectl: Kubectl) -> Iterator[None]:
    """For one test: the admins' group loses its cluster-wide Vapor writes (restored after)."""
    binding = json.loads(kubectl("get", "clusterrolebinding", VAPOR_ADMIN, "-o", "json").stdout)
    kubectl("delete", "clusterrolebinding", VAPOR_ADMIN)
    yield
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        binding["metadata"].pop(key, None)
    kubectl.apply(binding)


async def test_an_admins_writes_are_what_kubernetes_lets_that_user_do(
    client: Client, users: Users, kubectl: Kubectl, namespace: str, no_cluster_wide_grant: None
) -> None:
    token = (await login(client, users.admin))["token"]
    vm = {"name": "web", "namespace": namespace, "cpu": 1, "memory": "64Mi", "run_strategy": "Halted"}
    response = await client.post("/api/v1/vms", json=vm, headers=bearer(token))
    body = await response.get_json()
    assert (response.status_code, body["error"]["code"]) == (403, "PERMISSION_DENIED"), body
    assert f"vapor:{users.admin.name}" in body["error"]["message"]
    assert kubectl("get", "virtualmachine", "web", "-n", namespace, check=False).returncode != 0
    # A RoleBinding for that user in this namespace: the same request goes through, as that user.
    kubectl(
        "create", "rolebinding", "vapor-writes", "-n", namespace,
        f"--clusterrole={VAPOR_ADMIN}", f"--user=vapor:{users.admin.name}",
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
