"""The chart against the real kube-apiserver: rendered manifests applied with kubectl, and helm releases.

No kubelet or controller runs in the test control plane, so pods never
start; what is checked is that the API server accepts every object and that
helm installs, upgrades and uninstalls the release and its objects.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Kubectl

from .conftest import CHART, Helm, release_name

pytestmark = pytest.mark.chart

NAMESPACED = "deployments,daemonsets,services,serviceaccounts,roles,rolebindings"


def names_of(kubectl: Kubectl, kinds: str, namespace: str | None, release: str) -> set[str]:
    args = ["get", kinds, "-l", f"app.kubernetes.io/instance={release}", "-o", "name"]
    args += ["-n", namespace] if namespace else []
    return set(kubectl(*args).stdout.split())


def test_rendered_manifests_apply_server_side(helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    release = release_name()
    manifest = helm.template(
        release, namespace, "--set", "gateway.ingress.enabled=true", "--set", "gateway.trustedProxies=10.0.0.0/8"
    )
    dry = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=manifest)
    assert f"deployment.apps/{release}-vapor-gateway serverside-applied (server dry run)" in dry.stdout
    assert names_of(kubectl, NAMESPACED, namespace, release) == set()  # a dry run stores nothing
    try:
        kubectl("apply", "--server-side", "-f", "-", input=manifest)
        assert names_of(kubectl, NAMESPACED + ",ingresses", namespace, release) == {
            f"deployment.apps/{release}-vapor-operator",
            f"deployment.apps/{release}-vapor-gateway",
            f"daemonset.apps/{release}-vapor-agent",
            f"service/{release}-vapor-gateway",
            f"service/{release}-vapor-operator-metrics",
            f"service/{release}-vapor-agent-metrics",
            f"ingress.networking.k8s.io/{release}-vapor-gateway",
            *(f"serviceaccount/{release}-vapor-{c}" for c in ("operator", "agent", "gateway")),
            *(f"{kind}.rbac.authorization.k8s.io/{release}-vapor-{c}"
              for kind in ("role", "rolebinding") for c in ("agent", "gateway", "operator-migration-ca")),
        }  # fmt: skip
        assert names_of(kubectl, "clusterroles,clusterrolebindings", None, release) == {
            f"{kind}.rbac.authorization.k8s.io/{release}-vapor-{c}"
            for kind in ("clusterrole", "clusterrolebinding")
            for c in ("operator", "agent", "gateway", "users-crds", "users-vapor-admin")
        }
        # A second apply of the same manifests changes nothing.
        again = kubectl("apply", "--server-side", "-f", "-", input=manifest)
        assert "serverside-applied" in again.stdout
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=manifest, check=False)
    assert names_of(kubectl, "clusterroles,clusterrolebindings", None, release) == set()


def test_install_upgrade_uninstall(helm: Helm, kubectl: Kubectl, namespace: str, release: str) -> None:
    installed = helm("install", release, str(CHART), "--namespace", namespace, cluster=True)
    assert "STATUS: deployed" in installed.stdout
    assert f"port-forward service/{release}-vapor-gateway" in installed.stdout  # NOTES: how to log in
    assert "/api/v1/auth/login" in installed.stdout
    # The agents renew their Leases in the release namespace; the operator is told to look there.
    operator = kubectl.get_json("deployment", f"{release}-vapor-operator", "-n", namespace)
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VAPOR_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    status = json.loads(helm("status", release, "--namespace", namespace, "-o", "json", cluster=True).stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    assert f"daemonset.apps/{release}-vapor-agent" in names_of(kubectl, NAMESPACED, namespace, release)
    gateway = kubectl.get_json("deployment", f"{release}-vapor-gateway", "-n", namespace)
    assert gateway["spec"]["replicas"] == 1
    # The CRDs came with the chart's crds/ (already there: helm leaves them as they are).
    assert kubectl("get", "crd", "virtualmachines.vapor.io", "-o", "name").stdout.strip()

    upgraded = helm(
        "upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", "gateway.replicas=2", "--set", "gateway.ingress.enabled=true",
        "--set", "gateway.trustedProxies=10.0.0.0/8", cluster=True,
    )  # fmt: skip
    assert "STATUS: deployed" in upgraded.stdout and "REVISION: 2" in upgraded.stdout
    assert kubectl.get_json("deployment", f"{release}-vapor-gateway", "-n", namespace)["spec"]["replicas"] == 2
    assert kubectl.get_json("ingress", f"{release}-vapor-gateway", "-n", namespace)["spec"]["rules"]
    history = json.loads(helm("history", release, "--namespace", namespace, "-o", "json", cluster=True).stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    rollback = helm("rollback", release, "1", "--namespace", namespace, cluster=True)
    assert "Rollback was a success" in rollback.stdout
    assert kubectl.get_json("deployment", f"{release}-vapor-gateway", "-n", namespace)["spec"]["replicas"] == 1
    assert kubectl("get", "ingress", f"{release}-vapor-gateway", "-n", namespace, check=False).returncode != 0

    uninstalled = helm("uninstall", release, "--namespace", namespace, cluster=True)
    assert f'release "{release}" uninstalled' in uninstalled.stdout
    assert names_of(kubectl, NAMESPACED, namespace, release) == set()
    assert names_of(kubectl, "clusterroles,clusterrolebindings", None, release) == set()
    # CRDs stay (helm never deletes them): the users' VMs outlive the release.
    assert kubectl("get", "crd", "virtualmachines.vapor.io", "-o", "name").stdout.strip()
