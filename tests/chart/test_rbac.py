"""Each component's rendered ServiceAccount has what the component uses, and no more.

The chart is installed with helm into the test's namespace; ``kubectl auth
can-i --as=system:serviceaccount:...`` asks the real API server (RBAC on) for
each permission. Then the gateway and the operator run as real processes with
a token of their own ServiceAccount (TokenRequest), so a missing verb shows
up as a failure of the component itself.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.support.agent import qemu_reachable_dir
from tests.support.libvirtd import Libvirtd
from tests.support.pam import linux_accounts, pam_service
from tests.support.processes import ComponentProcess
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from .conftest import CHART, Helm, agent_as_in_its_pod, as_in_its_pod, kubeconfig_as, node_bound_kubeconfig

# A refusal by the API server in a component's log: "(403)", "status": 403, ... or "Forbidden"; not a
# port, a timestamp or a hex id that happens to hold the digits 403.
_STATUS_403 = re.compile(r"(?<![0-9A-Za-z.])403(?![0-9A-Za-z])")


def _refused(log: str) -> bool:
    return bool(_STATUS_403.search(log)) or "forbidden" in log.lower()


pytestmark = pytest.mark.chart

SNAPSHOTS, RESTORES = "virtualmachinesnapshots.vapor.io", "virtualmachinerestores.vapor.io"

# (verb, resource, where): where is "release" (the release namespace), "other"
# (a namespace of the cluster that is not the release's), or "cluster".
Check = tuple[str, str, str]

MAY: dict[str, list[Check]] = {
    "operator": [
        *((verb, "hosts.vapor.io", "cluster") for verb in ("get", "list", "watch", "patch")),
        ("patch", "hosts.vapor.io/status", "cluster"),
        *((verb, "virtualmachines.vapor.io", "other") for verb in ("get", "list", "watch", "patch")),
        ("patch", "virtualmachines.vapor.io/status", "other"),
        ("list", "migrations.vapor.io", "cluster"),
        ("watch", "mounts.vapor.io", "cluster"),
        *((verb, kind, "other") for verb in ("list", "watch", "patch") for kind in (SNAPSHOTS, RESTORES)),
        ("patch", f"{SNAPSHOTS}/status", "other"),
        *((verb, "images.vapor.io", "cluster") for verb in ("get", "list", "watch", "patch")),
        ("patch", "images.vapor.io/status", "cluster"),
        ("list", "leases.coordination.k8s.io", "cluster"),
        ("watch", "leases.coordination.k8s.io", "release"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
        ("create", "events.events.k8s.io", "other"),
        ("create", "events", "other"),
        # The nodes' migration certificates (migration.transport tls, the default).
        ("watch", "certificatesigningrequests.certificates.k8s.io", "cluster"),
        ("update", "certificatesigningrequests.certificates.k8s.io/approval", "cluster"),
        ("update", "certificatesigningrequests.certificates.k8s.io/status", "cluster"),
    ],
    "agent": [
        *((verb, "hosts.vapor.io", "cluster") for verb in ("get", "list", "watch", "create", "patch")),
        ("patch", "hosts.vapor.io/status", "cluster"),
        *((verb, "virtualmachines.vapor.io", "other") for verb in ("get", "list", "watch", "patch")),
        ("patch", "virtualmachines.vapor.io/status", "other"),
        *((verb, "leases.coordination.k8s.io", "release") for verb in ("get", "create", "patch")),
        ("create", "events.events.k8s.io", "other"),
        *((verb, "migrations.vapor.io", "other") for verb in ("get", "list", "watch")),
        ("patch", "migrations.vapor.io/status", "other"),
        *((verb, "mounts.vapor.io", "cluster") for verb in ("get", "list", "watch", "patch")),
        ("patch", "mounts.vapor.io/status", "cluster"),
        *(
            (verb, kind, "other")
            for verb in ("get", "list", "watch", "patch", "delete")
            for kind in (SNAPSHOTS, RESTORES)
        ),
        *(("patch", f"{kind}/status", "other") for kind in (SNAPSHOTS, RESTORES)),
        ("create", "tokenreviews.authentication.k8s.io", "cluster"),
        # cloud-init user-data a VM names (userDataSecretRef), read by name: only in
        # agent.cloudInitSecretNamespaces (default: default).
        ("get", "secrets", "other"),
        # Its migration certificate: asked for, and read back once the operator signed it.
        *((verb, "certificatesigningrequests.certificates.k8s.io", "cluster") for verb in ("create", "get")),
    ],
    "gateway": [
        *((verb, "hosts.vapor.io", "cluster") for verb in ("get", "list", "watch")),
        *((verb, "mounts.vapor.io", "cluster") for verb in ("get", "list", "watch")),
        *((verb, "virtualmachines.vapor.io", "other") for verb in ("get", "list", "watch")),
        *((verb, "migrations.vapor.io", "other") for verb in ("get", "list", "watch")),
        *((verb, "images.vapor.io", "cluster") for verb in ("get", "list", "watch")),
        *((verb, kind, "other") for verb in ("get", "list", "watch") for kind in (SNAPSHOTS, RESTORES)),
        ("impersonate", "users", "cluster"),  # every write is made as the logged-in user
        *((verb, "secrets", "release") for verb in ("get", "list", "create", "update", "patch", "delete")),
        ("create", "events.events.k8s.io", "other"),
    ],
}

MUST_NOT: dict[str, list[Check]] = {
    "operator": [
        ("get", "secrets", "release"),
        ("list", "secrets", "cluster"),
        ("delete", "hosts.vapor.io", "cluster"),
        ("create", "virtualmachines.vapor.io", "other"),
        ("delete", "virtualmachines.vapor.io", "other"),
        *((verb, kind, "other") for verb in ("create", "delete") for kind in (SNAPSHOTS, RESTORES)),
        ("create", "leases.coordination.k8s.io", "release"),
        ("patch", "mounts.vapor.io", "cluster"),
        *((verb, "images.vapor.io", "cluster") for verb in ("create", "delete")),
        ("list", "namespaces", "cluster"),
        ("create", "pods", "other"),
    ],
    "agent": [
        # Never Vapor's own keys (the gateway's signing key, the migration CA), nor other namespaces' Secrets.
        ("get", "secrets", "release"),
        ("get", "secrets", "kube-system"),
        ("get", "secrets", "cluster"),
        ("list", "secrets", "release"),
        ("list", "secrets", "other"),
        ("watch", "secrets", "other"),
        ("create", "secrets", "other"),
        ("delete", "hosts.vapor.io", "cluster"),
        ("create", "virtualmachines.vapor.io", "other"),
        ("delete", "virtualmachines.vapor.io", "other"),
        *(("create", kind, "other") for kind in (SNAPSHOTS, RESTORES)),  # users ask for them, never a node
        ("create", "leases.coordination.k8s.io", "other"),
        ("list", "leases.coordination.k8s.io", "cluster"),
        ("create", "pods", "other"),
        # A node never approves or signs a certificate, its own or another's.
        ("update", "certificatesigningrequests.certificates.k8s.io/approval", "cluster"),
        ("update", "certificatesigningrequests.certificates.k8s.io/status", "cluster"),
        ("delete", "certificatesigningrequests.certificates.k8s.io", "cluster"),
    ],
    "gateway": [
        # Writes are made as the user: the gateway itself may not write VMs, Mounts, Hosts or workloads.
        *((verb, "virtualmachines.vapor.io", "other") for verb in ("create", "patch", "delete")),
        *((verb, "migrations.vapor.io", "other") for verb in ("create", "patch")),
        *((verb, kind, "other") for verb in ("create", "patch", "delete") for kind in (SNAPSHOTS, RESTORES)),
        *((verb, "mounts.vapor.io", "cluster") for verb in ("create", "delete")),
        *((verb, "images.vapor.io", "cluster") for verb in ("create", "patch", "delete")),
        ("patch", "images.vapor.io/status", "cluster"),
        ("patch", "hosts.vapor.io", "cluster"),
        *((verb, "pods", "other") for verb in ("list", "create", "patch")),
        *((verb, "deployments.apps", "other") for verb in ("list", "create", "patch")),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "cluster"),
        ("delete", "hosts.vapor.io", "cluster"),
        ("create", "hosts.vapor.io", "cluster"),
        ("patch", "hosts.vapor.io/status", "cluster"),
        ("patch", "virtualmachines.vapor.io/status", "other"),
        ("patch", "mounts.vapor.io/status", "cluster"),
        ("delete", "pods", "other"),
        ("get", "secrets", "other"),
        ("create", "secrets", "other"),
        ("list", "secrets", "cluster"),
        ("get", "secrets", "kube-system"),
        ("create", "leases.coordination.k8s.io", "release"),
        ("create", "namespaces", "cluster"),
    ],
}


def can_i(kubectl: Kubectl, account: str, check: Check, release_ns: str) -> bool:
    verb, resource, where = check
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={account}"]
    args += [f"--subresource={sub}"] if sub else []
    if where == "release":
        args += ["-n", release_ns]
    elif where == "other":
        args += ["-n", "default"]
    elif where == "kube-system":
        args += ["-n", "kube-system"]
    else:
        args += ["--all-namespaces"]
    answer = kubectl(*args, check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


@pytest.mark.parametrize("component", ["operator", "agent", "gateway"])
def test_each_account_may_do_what_it_needs_and_nothing_else(
    kubectl: Kubectl, namespace: str, installed: str, component: str
) -> None:
    account = f"system:serviceaccount:{namespace}:{installed}-vapor-{component}"
    missing = [c for c in MAY[component] if not can_i(kubectl, account, c, namespace)]
    assert missing == [], f"{component} lacks what it needs"
    extra = [c for c in MUST_NOT[component] if can_i(kubectl, account, c, namespace)]
    assert extra == [], f"{component} may do more than it should"


def http(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def admin_user() -> Iterator[tuple[str, str, str]]:
    """(PAM service, user, password) of a real Linux user in an admin group."""
    with pam_service() as service, linux_accounts() as accounts:
        group = accounts.group("admins")
        user = accounts.user("alice", groups=(group,))
        yield service, user.name, user.password


def test_the_gateway_serves_with_its_own_account(
    control_plane: ControlPlane,
    helm: Helm,
    kubectl: Kubectl,
    namespace: str,
    installed: str,
    admin_user: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    service, user, password = admin_user
    port = free_port()
    group = user[: len(user) - len("alice")] + "admins"
    helm(
        "upgrade", installed, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", f"gateway.pamService={service}", "--set", f"gateway.adminGroups={group}",
        "--set", f"gateway.port={port}",
        # The built-in "edit" is filled by kube-controller-manager, which does not run here.
        "--set", "gateway.userAccess.adminClusterRole=vapor-users-edit", cluster=True,
    )  # fmt: skip
    config = kubeconfig_as(control_plane, kubectl, namespace, f"{installed}-vapor-gateway", tmp_path / "kubeconfig")
    args, env = as_in_its_pod(kubectl, namespace, f"{installed}-vapor-gateway", config)
    assert env["VAPOR_SECRET_NAMESPACE"] == namespace
    # The kubelet's part: the projected token for the agents (audience vapor-agent) at the chart's path.
    pod = kubectl.get_json("deployment", f"{installed}-vapor-gateway", "-n", namespace)["spec"]["template"]["spec"]
    projected = next(v["projected"] for v in pod["volumes"] if v["name"] == "agent-token")
    assert projected["sources"][0]["serviceAccountToken"]["audience"] == "vapor-agent"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "agent-token")
    assert env["VAPOR_AGENT_TOKEN_FILE"] == f"{mount['mountPath']}/token"
    agent_token = tmp_path / "agent-token"
    agent_token.write_text(
        kubectl("create", "token", f"{installed}-vapor-gateway", "-n", namespace, "--audience=vapor-agent").stdout
    )
    env["VAPOR_AGENT_TOKEN_FILE"] = str(agent_token)
    gateway = ComponentProcess("vapor.gateway", args, tmp_path / "gateway.log", env)
    url = f"http://127.0.0.1:{port}"
    with gateway:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:  # the readiness probe's path
                    return bool(resp.status == 200)
            except OSError:
                return False

        try:
            wait_until(up, timeout=60, what="the gateway to serve")
        except AssertionError as error:
            raise AssertionError(f"{error}; its log:\n{gateway.tail()}") from None
        # It made its signing key Secret in the release namespace, with its own account.
        assert kubectl("get", "secret", "vapor-gateway-signing-key", "-n", namespace, "-o", "name").stdout.strip()
        status, body = http("POST", f"{url}/api/v1/auth/login", {"username": user, "password": password})
        assert status == 200, body
        token = body["data"]["token"]
        status, body = http("GET", f"{url}/api/v1/hosts", token=token)
        assert status == 200, body
        vm = {"name": "rbac-probe", "namespace": namespace, "cpu": 1, "memory": "64Mi"}
        status, body = http("POST", f"{url}/api/v1/vms?namespace={namespace}", vm, token=token)
        assert status in (200, 201), body
        assert kubectl("get", "virtualmachines", "rbac-probe", "-n", namespace, "-o", "name").stdout.strip()
        status, body = http("DELETE", f"{url}/api/v1/vms/rbac-probe?namespace={namespace}", token=token)
        assert status in (200, 202, 204), body
        log = gateway.tail(400)
        # /api/v1/kubernetes acts as the user, with the chart's user RBAC: a pod in the allow-listed
        # namespace "default", none in the release namespace (where the gateway's own secrets are).
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"probe-{installed}"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        try:
            status, body = http("POST", f"{url}/api/v1/kubernetes/pods", {**probe, "metadata": {
                **probe["metadata"], "namespace": "default"}}, token=token)  # fmt: skip
            assert status == 201, body
            status, body = http("POST", f"{url}/api/v1/kubernetes/pods", {**probe, "metadata": {
                **probe["metadata"], "namespace": namespace}}, token=token)  # fmt: skip
            assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED"), body
            assert f"vapor:{user}" in body["error"]["message"]
        finally:
            kubectl("delete", "pod", f"probe-{installed}", "-n", "default", "--wait=false", "--force",
                    "--grace-period=0", "--ignore-not-found", check=False)  # fmt: skip
    assert not _refused(log), log


def test_the_gateway_may_impersonate_only_vapors_groups(kubectl: Kubectl, namespace: str, installed: str) -> None:
    account = f"system:serviceaccount:{namespace}:{installed}-vapor-gateway"

    def may(group: str) -> str:
        return str(kubectl("auth", "can-i", "impersonate", f"groups/{group}", f"--as={account}", check=False).stdout)

    assert may("vapor:admins").strip() == "yes"
    assert may("vapor:viewers").strip() == "yes"
    for group in ("system:masters", "system:nodes", "kubeadm:cluster-admins"):
        assert may(group).strip() == "no", group


def test_the_operator_places_with_its_own_account(
    control_plane: ControlPlane, helm: Helm, kubectl: Kubectl, namespace: str, installed: str, tmp_path: Path
) -> None:
    port = free_port()
    helm(
        "upgrade", installed, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", f"operator.livenessPort={port}", "--set", f"operator.metricsPort={free_port()}", cluster=True,
    )  # fmt: skip
    config = kubeconfig_as(control_plane, kubectl, namespace, f"{installed}-vapor-operator", tmp_path / "kubeconfig")
    args, env = as_in_its_pod(kubectl, namespace, f"{installed}-vapor-operator", config)
    operator = ComponentProcess("vapor.operator", args, tmp_path / "operator.log", env)
    # No Ready host can take this VM: the operator says so in its status.
    selector = {"vapor.io/rack": f"nowhere-{installed}"}
    vm = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": "rbac-probe", "namespace": namespace},
        "spec": {"runStrategy": "Running", "cpu": 1, "memory": "64Mi", "hostSelector": selector},
    }
    kubectl.apply(vm)
    with operator:

        def phase() -> str | None:
            status = kubectl.get_json("virtualmachine", "rbac-probe", "-n", namespace).get("status") or {}
            return status.get("phase")

        try:
            assert wait_until(phase, timeout=60, what="the operator to set a phase") == "Unschedulable"
        except AssertionError as error:
            raise AssertionError(f"{error}; its log:\n{operator.tail()}") from None
        # The liveness probe's endpoint answers where the chart points it.
        assert http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200
        time.sleep(1)  # let any late failure reach the log
        log = operator.tail(400)
    assert not _refused(log), log


def test_the_agent_registers_its_host_with_its_own_account(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, installed: str, tmp_path: Path
) -> None:
    node = f"chart-{installed}"
    # A VM the operator placed on this node (label and status, as placement writes them): the agent adds
    # its finalizer and reports the VM's phase, through the chart's admission policy.
    vm = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": "rbac-probe", "namespace": namespace, "labels": {"vapor.io/host": node}},
        "spec": {"runStrategy": "Halted", "cpu": 1, "memory": "64Mi"},
    }
    kubectl.apply(vm)
    state = qemu_reachable_dir()
    daemon = Libvirtd().start()
    # The token the kubelet mounts in the agent's pod: bound to the pod and so to its node, which the
    # chart's admission policy requires of every agent write.
    bound = node_bound_kubeconfig(control_plane, kubectl, namespace, f"{installed}-vapor-agent", node, tmp_path / "kc")
    try:
        with bound as config:
            agent = agent_as_in_its_pod(
                kubectl, namespace, installed, node, config, state, daemon.uri, tmp_path / "agent.log"
            )
            assert f"--lease-namespace={namespace}" in agent.args
            assert f"--api-allowed-user=system:serviceaccount:{namespace}:{installed}-vapor-gateway" in agent.args
            with agent:

                def registered() -> bool:
                    host = kubectl("get", "host", node, "-o", "json", check=False)
                    lease = kubectl("get", "lease", node, "-n", namespace, "-o", "name", check=False)
                    status = json.loads(host.stdout).get("status") or {} if host.returncode == 0 else {}
                    return bool(status.get("hostname")) and lease.returncode == 0

                def vm_reported() -> bool:
                    got = kubectl.get_json("virtualmachine", "rbac-probe", "-n", namespace)
                    return bool(got["metadata"].get("finalizers")) and bool((got.get("status") or {}).get("phase"))

                try:
                    wait_until(registered, timeout=60, what="the agent's Host with a status, and its Lease")
                    wait_until(vm_reported, timeout=60, what="the agent's finalizer and phase on its VM")
                except AssertionError as error:
                    raise AssertionError(f"{error}; its log:\n{agent.tail()}") from None
                # The heartbeat is renewed (a patch of the Lease), not only created.
                first = kubectl.get_json("lease", node, "-n", namespace)["spec"]["renewTime"]
                wait_until(
                    lambda: kubectl.get_json("lease", node, "-n", namespace)["spec"]["renewTime"] != first,
                    timeout=20,
                    what="a renewal of the Lease",
                )
                # Deleted while the agent runs: it undefines the domain and removes its finalizer.
                kubectl("delete", "virtualmachine", "rbac-probe", "-n", namespace, "--wait=false")
                wait_until(
                    lambda: kubectl("get", "virtualmachine", "rbac-probe", "-n", namespace, check=False).returncode,
                    timeout=60,
                    what="the agent to let its deleted VM go",
                )
                log = agent.tail(400)
            assert not _refused(log), log
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", f"hosts.vapor.io/{node}", check=False)
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)
