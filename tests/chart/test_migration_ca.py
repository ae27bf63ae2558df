"""The chart's migration settings: qemu+tls by default, the migration CA, and the accounts that use it.

Rendered: what the agents and the operator are told for each transport and
with a cert-manager issuer. Installed: the operator with the chart's own
account and settings makes the CA Secret and signs the certificate a node's
agent asks for with its pod-bound token (real RBAC, real admission, the
agent's own code).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import Kubectl
from tests.support.processes import ComponentProcess
from tests.support.wait import wait_until
from vapor.agent.host.migrationcsr import MigrationCertificate
from vapor.agent.host.migrationpki import MigrationPKI
from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import Host

from .conftest import Helm, kubeconfig_as, node_bound_kubeconfig
from .test_rbac import as_in_its_pod
from .test_render import by_kind, container, env_of

pytestmark = pytest.mark.chart


def _rendered(helm: Helm, *flags: str) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind(helm.objects("vapor", "vapor-system", *flags))


def _rules(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return list(objects.get((kind, name), {}).get("rules") or [])


def test_tls_is_the_default_and_the_operator_holds_the_ca(helm: Helm) -> None:
    objects = _rendered(helm)
    agent = container(objects[("DaemonSet", "vapor-agent")])
    assert "--migration-transport=tls" in agent["args"] and "--migration-csr" in agent["args"]
    assert env_of(objects[("DaemonSet", "vapor-agent")])["NODE_IP"] == "<from>"  # status.hostIP: its address
    env = env_of(objects[("Deployment", "vapor-operator")])
    assert env["VAPOR_MIGRATION_CA_SECRET"] == "vapor-migration-ca" and env["VAPOR_MIGRATION_CA_CREATE"] == "true"
    assert env["VAPOR_MIGRATION_AGENT_USER"] == "system:serviceaccount:vapor-system:vapor-agent"
    secrets = [r for r in _rules(objects, "Role", "vapor-operator-migration-ca") if r["resources"] == ["secrets"]]
    assert {r["verbs"][0]: r.get("resourceNames") for r in secrets} == {"get": ["vapor-migration-ca"], "create": None}
    signers = [r for r in _rules(objects, "ClusterRole", "vapor-operator") if r["resources"] == ["signers"]]
    assert signers == [
        {
            "apiGroups": ["certificates.k8s.io"],
            "resources": ["signers"],
            "resourceNames": ["vapor.io/migration"],
            "verbs": ["approve", "sign"],
        }
    ]
    assert not any(("Certificate", name) in objects for name in ("vapor-migration-ca",))


def test_a_cert_manager_issuer_makes_the_ca_instead(helm: Helm) -> None:
    objects = _rendered(helm, "--set", "migration.issuer.name=fleet-ca", "--set", "migration.issuer.kind=ClusterIssuer")
    cert = objects[("Certificate", "vapor-migration-ca")]["spec"]
    assert cert["isCA"] is True and cert["secretName"] == "vapor-migration-ca"
    assert cert["issuerRef"] == {"name": "fleet-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert env_of(objects[("Deployment", "vapor-operator")])["VAPOR_MIGRATION_CA_CREATE"] == "false"
    verbs = {v for r in _rules(objects, "Role", "vapor-operator-migration-ca") for v in r["verbs"]}
    assert verbs == {"get"}  # cert-manager makes the Secret: the operator may not


def test_tcp_is_an_explicit_choice_without_any_certificate(helm: Helm) -> None:
    objects = _rendered(helm, "--set", "migration.transport=tcp")
    agent = container(objects[("DaemonSet", "vapor-agent")])
    assert "--migration-transport=tcp" in agent["args"] and "--migration-csr" not in agent["args"]
    assert "VAPOR_MIGRATION_CA_SECRET" not in env_of(objects[("Deployment", "vapor-operator")])
    assert ("Role", "vapor-operator-migration-ca") not in objects
    result = helm("template", "vapor", "charts/vapor", "--set", "migration.transport=ssh", check=False)
    assert result.returncode != 0 and "at '/migration/transport'" in result.stderr


def test_a_nodes_agent_gets_its_certificate_from_the_charts_operator(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, installed: str, tmp_path: Path
) -> None:
    node, address = f"chart-{installed}", "192.0.2.77"
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": node}})
    status = json.dumps({"status": {"hypervisor": {"migrationAddress": address}}})
    kubectl("patch", "hosts.vapor.io", node, "--subresource=status", "--type=merge", "-p", status)
    operator_account = f"{installed}-vapor-operator"
    config = kubeconfig_as(control_plane, kubectl, namespace, operator_account, tmp_path / "operator-kubeconfig")
    args, env = as_in_its_pod(kubectl, namespace, operator_account, config)
    env["VAPOR_MIGRATION_CA_NAMESPACE"] = namespace  # the chart's fieldRef: the pod's namespace
    try:
        with (
            ComponentProcess("vapor.operator", args, tmp_path / "operator.log", env) as operator,
            node_bound_kubeconfig(
                control_plane, kubectl, namespace, f"{installed}-vapor-agent", node, tmp_path / "agent-kubeconfig"
            ) as agent_config,
        ):
            published = Host.model_validate(
                {"metadata": {"name": node}, "status": {"hypervisor": {"migrationAddress": address}}}
            )

            async def ask() -> None:
                async with await Kube.connect(str(agent_config)) as kube:
                    files = MigrationPKI(tmp_path / "pki")
                    await MigrationCertificate(kube, node, address, files, lambda: published, wait=60).ensure()

            try:
                asyncio.run(ask())
            except Exception as exc:
                raise AssertionError(f"{exc}\n{operator.tail(40)}") from exc
        secret = wait_until(
            lambda: kubectl("get", "secret", "vapor-migration-ca", "-n", namespace, "-o", "json", check=False).stdout,
            10,
            what="the CA Secret",
        )
        ca = x509.load_pem_x509_certificate(base64.b64decode(json.loads(secret)["data"]["tls.crt"]))
        cert = x509.load_pem_x509_certificate(MigrationPKI(tmp_path / "pki").server_cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [address]
    finally:
        kubectl("delete", "hosts.vapor.io", node, "--ignore-not-found", "--wait=false", check=False)
        for name in kubectl("get", "csr", "-o", "name", check=False).stdout.split():
            if node in name:
                kubectl("delete", name, "--wait=false", check=False)
