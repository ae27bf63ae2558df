"""The Kubernetes endpoints against the real API server: lists in kubectl's columns, apply of JSON and YAML.

No scheduler or controller-manager runs on the test control plane, so pods stay
Pending and deployments never get ready replicas: the tests assert exactly that.

The gateway acts as the logged-in user (``vapor:<name>`` in ``vapor:admins`` or
``vapor:viewers``), so each test namespace gets the RoleBindings the chart
gives its allow-listed namespaces (``vapor.devenv.useraccess``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.devenv.useraccess import ADMINS, EDIT, VIEW, VIEWERS
from vapor.gateway._kubeviews import age

from ..conftest import Kubectl
from .conftest import Users, bearer, login

pytestmark = pytest.mark.controlplane


@pytest.fixture
def k8s_namespace(control_plane: ControlPlane, kubectl: Kubectl, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("k8s")
    kubectl("create", "namespace", name)
    control_plane.grant_user_access([name])
    yield name
    for kind in ("pods", "deployments", "services"):
        kubectl("delete", kind, "--all", "-n", name, "--wait=false", "--grace-period=0", "--force", check=False)
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def pod(name: str, namespace: str, image: str = "nginx:1.27") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
    }


def deployment(name: str, namespace: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def service(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]},
    }


@pytest.fixture
def cluster_wide(kubectl: Kubectl, unique: Callable[[str], str]) -> Iterator[None]:
    """For one test: REST admins may edit, and viewers view, in every namespace (a ClusterRoleBinding each)."""
    names = []
    for group, role in ((ADMINS, EDIT), (VIEWERS, VIEW)):
        name = unique(role)
        kubectl("create", "clusterrolebinding", name, f"--clusterrole={role}", f"--group={group}")
        names.append(f"clusterrolebinding/{name}")
    yield
    kubectl("delete", "--ignore-not-found", *names, check=False)


async def admin_token(client: Client, users: Users) -> str:
    return str((await login(client, users.admin))["token"])


async def post(client: Client, path: str, token: str, body: bytes | str, content_type: str) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    headers = {**bearer(token), "Content-Type": content_type}
    response = await client.post(f"/api/v1/kubernetes/{path}", data=data, headers=headers)
    return response.status_code, await response.get_json()


async def get(client: Client, path: str, token: str) -> tuple[int, Any]:
    response = await client.get(f"/api/v1/kubernetes/{path}", headers=bearer(token))
    return response.status_code, await response.get_json()


async def test_pod_applied_from_json_then_yaml_shows_in_the_list(
    client: Client, users: Users, kubectl: Kubectl, k8s_namespace: str
) -> None:
    token = await admin_token(client, users)
    status, body = await post(client, "pods", token, json.dumps(pod("web", k8s_namespace)), "application/json")
    assert status == 201, body
    assert body["data"]["created"] is True
    assert body["data"]["message"] == f"Pod {k8s_namespace}/web created"

    # The same pod again, from YAML with a new image: an update, owned by the same user.
    status, body = await post(
        client, "pods", token, yaml.safe_dump(pod("web", k8s_namespace, "nginx:1.28")), "application/yaml"
    )
    assert status == 200, body
    assert body["data"]["created"] is False
    stored = kubectl.get_json("pod", "web", "-n", k8s_namespace, "--show-managed-fields")
    assert stored["spec"]["containers"][0]["image"] == "nginx:1.28"
    managers = {m["manager"] for m in stored["metadata"]["managedFields"]}
    assert f"vapor-gateway:{users.admin.name}" in managers

    status, body = await get(client, f"pods?namespace={k8s_namespace}", token)
    assert status == 200, body
    assert body["data"]["pods"] == [
        {
            "name": "web",
            "namespace": k8s_namespace,
            "status": "Pending",  # no scheduler runs here
            "ready": "0/1",
            "restarts": 0,
            "age": body["data"]["pods"][0]["age"],
            "ip": None,
            "node": None,
        }
    ]
    assert body["data"]["pods"][0]["age"].endswith("s")


async def test_text_yaml_deployment_and_service(client: Client, users: Users, k8s_namespace: str) -> None:
    token = await admin_token(client, users)
    status, body = await post(
        client, "deployments", token, yaml.safe_dump(deployment("api", k8s_namespace)), "text/yaml"
    )
    assert status == 201, body
    status, body = await post(client, "services", token, yaml.safe_dump(service("api", k8s_namespace)), "text/yaml")
    assert status == 201, body

    status, body = await get(client, f"deployments?namespace={k8s_namespace}", token)
    assert status == 200, body
    [row] = body["data"]["deployments"]
    assert (row["name"], row["ready"], row["available"], row["images"]) == ("api", "0/2", 0, ["nginx:1.27"])

    status, body = await get(client, f"services?namespace={k8s_namespace}", token)
    [row] = body["data"]["services"]
    assert row["type"] == "NodePort"
    assert row["cluster_ip"]  # allocated by the API server
    assert row["ports"][0].startswith("80:") and row["ports"][0].endswith("/TCP")  # 80:<node port>/TCP


async def test_all_namespaces_and_label_selector(
    client: Client, users: Users, k8s_namespace: str, cluster_wide: None
) -> None:
    token = await admin_token(client, users)
    for name in ("a", "b"):
        status, body = await post(client, "pods", token, json.dumps(pod(name, k8s_namespace)), "application/json")
        assert status == 201, body
    status, body = await get(client, "pods", token)
    mine = [p["name"] for p in body["data"]["pods"] if p["namespace"] == k8s_namespace]
    assert mine == ["a", "b"]
    status, body = await get(client, f"pods?namespace={k8s_namespace}&label_selector=app%3Db", token)
    assert [p["name"] for p in body["data"]["pods"]] == ["b"]


async def test_crds_list_vapor_kinds(client: Client, users: Users) -> None:
    token = await admin_token(client, users)
    status, body = await get(client, "crds", token)
    assert status == 200, body
    rows = {c["name"]: c for c in body["data"]["crds"]}
    vm = rows["virtualmachines.vapor.io"]
    assert (vm["group"], vm["version"], vm["kind"], vm["scope"]) == (
        "vapor.io",
        "v1alpha1",
        "VirtualMachine",
        "Namespaced",
    )
    assert rows["hosts.vapor.io"]["scope"] == "Cluster"


async def test_dry_run_stores_nothing(client: Client, users: Users, kubectl: Kubectl, k8s_namespace: str) -> None:
    token = await admin_token(client, users)
    headers = {**bearer(token), "Content-Type": "application/json"}
    response = await client.post(
        "/api/v1/kubernetes/pods?dry_run=true", data=json.dumps(pod("ghost", k8s_namespace)), headers=headers
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["data"]["dry_run"] is True and "would be created" in body["data"]["message"]
    result = kubectl("get", "pod", "ghost", "-n", k8s_namespace, check=False)
    assert result.returncode != 0 and "NotFound" in result.stderr


async def test_a_viewer_may_list_but_not_apply(client: Client, users: Users, k8s_namespace: str) -> None:
    token = str((await login(client, users.viewer))["token"])
    status, _ = await get(client, "crds", token)
    assert status == 200
    status, body = await post(client, "pods", token, json.dumps(pod("nope", k8s_namespace)), "application/json")
    assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED")


BAD_BODIES = [
    pytest.param("pods", "application/json", b"{not json", 400, "not valid JSON", id="broken-json"),
    pytest.param("pods", "application/yaml", b"kind: Pod\n  metadata: [", 400, "not valid YAML", id="broken-yaml"),
    pytest.param("pods", "application/json", b"", 400, "empty", id="empty-body"),
    pytest.param("pods", "application/json", b"[1, 2]", 400, "must be an object", id="a-list"),
    pytest.param("pods", "text/plain", b"kind: Pod", 415, "application/json", id="wrong-content-type"),
    pytest.param("pods", "application/yaml", b"a: 1\n---\nb: 2\n", 400, "exactly one object", id="two-documents"),
]


@pytest.mark.parametrize(("path", "content_type", "body", "status", "words"), BAD_BODIES)
async def test_bad_bodies(
    client: Client, users: Users, path: str, content_type: str, body: bytes, status: int, words: str
) -> None:
    token = await admin_token(client, users)
    got, answer = await post(client, path, token, body, content_type)
    assert got == status, answer
    assert answer["status"] == "error" and answer["error"]["code"] == "INVALID_INPUT"
    assert words in answer["error"]["message"]


async def test_refusals_name_the_problem(client: Client, users: Users, k8s_namespace: str, cluster_wide: None) -> None:
    token = await admin_token(client, users)
    # A Service sent to the pods endpoint.
    status, body = await post(client, "pods", token, json.dumps(service("s", k8s_namespace)), "application/json")
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT")
    assert "applies Pod objects" in body["error"]["message"]
    # No name.
    nameless = pod("x", k8s_namespace)
    del nameless["metadata"]["name"]
    status, body = await post(client, "pods", token, json.dumps(nameless), "application/json")
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT") and "metadata.name" in body["error"]["message"]
    # The API server's own validation: a pod without containers, a bad name.
    empty = pod("empty", k8s_namespace)
    empty["spec"]["containers"] = []
    status, body = await post(client, "pods", token, json.dumps(empty), "application/json")
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT")
    assert "spec.containers" in (body["error"].get("details") or body["error"]["message"])
    status, body = await post(client, "pods", token, json.dumps(pod("Bad_Name", k8s_namespace)), "application/json")
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT")
    # A namespace that does not exist.
    status, body = await post(client, "pods", token, json.dumps(pod("p", "no-such-ns-x1")), "application/json")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    # A bad query string.
    status, body = await get(client, "pods?namespace=Not_A_Namespace", token)
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT")


async def test_another_managers_field_is_a_conflict_unless_forced(
    client: Client, users: Users, kubectl: Kubectl, k8s_namespace: str
) -> None:
    token = await admin_token(client, users)
    kubectl.apply(deployment("owned", k8s_namespace, replicas=3), "--server-side", "--field-manager=someone-else")
    status, body = await post(
        client, "deployments", token, json.dumps(deployment("owned", k8s_namespace, replicas=1)), "application/json"
    )
    assert (status, body["error"]["code"]) == (409, "CONFLICT"), body
    headers = {**bearer(token), "Content-Type": "application/json"}
    response = await client.post(
        "/api/v1/kubernetes/deployments?force=true",
        data=json.dumps(deployment("owned", k8s_namespace, replicas=1)),
        headers=headers,
    )
    assert response.status_code == 200, await response.get_json()
    stored = kubectl.get_json("deployment", "owned", "-n", k8s_namespace)
    assert stored["spec"]["replicas"] == 1


async def test_no_token_no_list(client: Client) -> None:
    response = await client.get("/api/v1/kubernetes/pods")
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "UNAUTHORIZED"


def test_age_reads_like_kubectl() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 10, tzinfo=UTC)
    stamp = lambda delta: (now - delta).isoformat().replace("+00:00", "Z")  # noqa: E731
    assert age(stamp(timedelta(seconds=42)), now) == "42s"
    assert age(stamp(timedelta(minutes=5)), now) == "5m"
    assert age(stamp(timedelta(hours=3)), now) == "3h"
    assert age(stamp(timedelta(days=2, hours=5)), now) == "2d"
    assert age(stamp(timedelta(days=800)), now) == "2y"
    assert age(None, now) == "<unknown>"


async def test_an_admin_acts_only_where_kubernetes_lets_that_user(
    client: Client, users: Users, kubectl: Kubectl, unique: Callable[[str], str]
) -> None:
    # The escalation this closes: an admin of Vapor applying a pod as the gateway (a privileged pod with the
    # node's / mounted, or one in vapor-system with the gateway's ServiceAccount) owned the cluster. The
    # gateway now acts as the user, and the user has no rights in vapor-system or an unlisted namespace.
    token = await admin_token(client, users)
    team = unique("team-a")
    kubectl("create", "namespace", team)
    try:
        escalation = pod("root", "vapor-system")
        escalation["spec"]["serviceAccountName"] = "vapor-gateway"
        status, body = await post(client, "pods", token, json.dumps(escalation), "application/json")
        assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED"), body
        assert f"vapor:{users.admin.name}" in body["error"]["message"]
        status, body = await post(client, "pods", token, json.dumps(pod("web", team)), "application/json")
        assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED"), body
        status, body = await get(client, f"pods?namespace={team}", token)
        assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED"), body
        # A RoleBinding for that user in team-a: the same request goes through, as that user.
        kubectl(
            "create",
            "rolebinding",
            "alice-edits",
            "-n",
            team,
            f"--clusterrole={EDIT}",
            f"--user=vapor:{users.admin.name}",
        )
        status, body = await post(client, "pods", token, json.dumps(pod("web", team)), "application/json")
        assert status == 201, body
        assert kubectl.get_json("pod", "web", "-n", team)["metadata"]["name"] == "web"
        assert kubectl("get", "pod", "root", "-n", "vapor-system", check=False).returncode != 0
    finally:
        kubectl("delete", "pods", "--all", "-n", team, "--wait=false", "--grace-period=0", "--force", check=False)
        kubectl("delete", "namespace", team, "--wait=false", check=False)
