"""Nodes' migration certificates: a key made by the agent, a CSR, the operator's CA signs the node's own address only.

Real parts: the API server records who asked (the pod-bound token's node),
the operator runs as a process with a migration CA Secret it makes itself,
and the agent's own code (vapor.agent.host.migrationcsr) asks and installs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from vapor.agent.host.migrationcsr import Denied, MigrationCertificate, csr_object, signing_request
from vapor.agent.host.migrationpki import MigrationPKI
from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import Host
from vapor.pki import new_key

from ..chart.conftest import node_bound_kubeconfig
from ..conftest import Kubectl
from ..support.processes import ComponentProcess
from ..support.wait import wait_until


@dataclass
class Setup:
    namespace: str
    secret: str
    nodes: list[str]
    addresses: list[str]
    operator: ComponentProcess


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A namespace with the agents' ServiceAccount, two Hosts with their addresses, and an operator holding a CA."""
    run = uuid.uuid4().hex[:6]
    ns, secret = f"mcert-{run}", f"migration-ca-{run}"
    nodes, addresses = [f"mcert-{run}-a", f"mcert-{run}-b"], ["192.0.2.10", "192.0.2.11"]
    kubectl("create", "namespace", ns)
    kubectl("create", "serviceaccount", "agent", "-n", ns)
    # What the chart's agent ClusterRole grants for this: ask, and read the answer.
    kubectl("create", "clusterrole", ns, "--verb=create,get", "--resource=certificatesigningrequests")
    kubectl("create", "clusterrolebinding", ns, f"--clusterrole={ns}", f"--serviceaccount={ns}:agent")
    proc = None
    try:
        for node, address in zip(nodes, addresses, strict=True):
            kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": node}})
            status = {"status": {"hypervisor": {"migrationAddress": address}}}
            kubectl("patch", "hosts.vapor.io", node, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        proc = ComponentProcess(
            "vapor.operator",
            ["--kubeconfig", str(control_plane.kubeconfig)],
            tmp_path_factory.mktemp("operator") / "operator.log",
            env={
                "VAPOR_MIGRATION_CA_SECRET": secret,
                "VAPOR_MIGRATION_CA_NAMESPACE": ns,
                "VAPOR_MIGRATION_AGENT_USER": f"system:serviceaccount:{ns}:agent",
                "VAPOR_MIGRATION_CERT_DAYS": "30",
            },
        ).start()
        yield Setup(ns, secret, nodes, addresses, proc)
    finally:
        if proc is not None:
            proc.stop()
        kubectl("delete", "hosts.vapor.io", *nodes, "--ignore-not-found", "--wait=false", check=False)
        for name in kubectl("get", "csr", "-o", "name", check=False).stdout.split():
            if f"-{run}-" in name:
                kubectl("delete", name, "--wait=false", check=False)
        kubectl("delete", "clusterrolebinding,clusterrole", ns, "--wait=false", check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _ask(kubeconfig: Path, node: str, address: str, folder: Path) -> MigrationPKI:
    """What the agent of ``node`` does: ask for a certificate naming ``address`` and install it in ``folder``."""

    async def go() -> None:
        published = Host.model_validate(
            {"metadata": {"name": node}, "status": {"hypervisor": {"migrationAddress": address}}}
        )
        async with await Kube.connect(str(kubeconfig)) as kube:
            pki = MigrationPKI(folder)
            await MigrationCertificate(kube, node, address, pki, lambda: published, folder, wait=30).ensure()

    asyncio.run(go())
    return MigrationPKI(folder)


def _ca(kubectl: Kubectl, setup: Setup) -> x509.Certificate:
    secret = kubectl.get_json("secret", setup.secret, "-n", setup.namespace)
    assert secret["type"] == "kubernetes.io/tls" and "tls.key" in secret["data"]
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


def test_an_agent_gets_a_certificate_for_its_own_address(
    setup: Setup, control_plane: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    node, address = setup.nodes[0], setup.addresses[0]
    with node_bound_kubeconfig(control_plane, kubectl, setup.namespace, "agent", node, tmp_path / "kc") as kc:
        files = _ask(kc, node, address, tmp_path / "pki")
    assert files.installed()
    ca = _ca(kubectl, setup)  # the operator made the CA Secret; the agent trusts exactly that CA
    assert files.ca_cert.read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [address] and len(list(sans)) == 1
    assert cert.subject.rfc4514_string() == f"CN=vapor-migration:{node}"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (files.libvirt / "serverkey.pem").stat().st_mode & 0o077 == 0  # the key stays root's, on the node


def test_an_agent_cannot_get_a_certificate_for_another_hosts_address(
    setup: Setup, control_plane: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    node, other = setup.nodes[0], setup.addresses[1]
    with (
        node_bound_kubeconfig(control_plane, kubectl, setup.namespace, "agent", node, tmp_path / "kc") as kc,
        pytest.raises(Denied) as refused,
    ):
        _ask(kc, node, other, tmp_path / "pki")
    assert f"its Host's migration address {setup.addresses[0]}, not {other}" in str(refused.value)
    assert not MigrationPKI(tmp_path / "pki").installed()


def test_a_request_without_a_node_bound_token_is_denied(setup: Setup, kubectl: Kubectl) -> None:
    """The admin (or any token bound to no pod) asking for node a's address: nobody's node, so denied."""
    name = f"vapor-migration-{setup.nodes[0]}-admin"
    request = signing_request(setup.nodes[0], setup.addresses[0], new_key())
    csr = csr_object(name, request)
    kubectl.apply(csr)

    def decided() -> dict[str, str] | None:
        conditions = (kubectl.get_json("csr", name).get("status") or {}).get("conditions") or []
        return conditions[0] if conditions else None

    try:
        condition = wait_until(decided, 30, what="the request decided")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{setup.operator.tail(30)}") from exc
    assert condition["type"] == "Denied", condition
    assert "only the Vapor agents" in condition["message"]
    assert not (kubectl.get_json("csr", name).get("status") or {}).get("certificate")


def test_requests_waiting_when_the_operator_starts_are_all_decided(
    control_plane: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    """At start-up the operator decides every pending request at once; the first makes the CA, the others use it.

    (Each handler tried to make the CA; all but one failed on 409 AlreadyExists and, kopf not retrying event
    handlers, their requests were never decided.)
    """
    run = uuid.uuid4().hex[:6]
    ns, secret = f"mstart-{run}", f"migration-ca-{run}"
    names = [f"vapor-migration-mstart-{run}-{i}" for i in range(4)]
    kubectl("create", "namespace", ns)
    proc = None
    try:
        for name in names:  # asked by the admin, not an agent: each is to be denied, once the CA is there
            kubectl.apply(csr_object(name, signing_request(f"mstart-{run}", "192.0.2.20", new_key())))
        proc = ComponentProcess(
            "vapor.operator",
            ["--kubeconfig", str(control_plane.kubeconfig)],
            tmp_path / "operator.log",
            env={
                "VAPOR_MIGRATION_CA_SECRET": secret,
                "VAPOR_MIGRATION_CA_NAMESPACE": ns,
                "VAPOR_MIGRATION_AGENT_USER": f"system:serviceaccount:{ns}:agent",
            },
        ).start()

        def all_decided() -> bool:
            return all((kubectl.get_json("csr", n).get("status") or {}).get("conditions") for n in names)

        try:
            wait_until(all_decided, 60, what="every request decided")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{proc.tail(30)}") from exc
        for name in names:
            (condition,) = kubectl.get_json("csr", name)["status"]["conditions"]
            assert condition["type"] == "Denied" and "only the Vapor agents" in condition["message"]
    finally:
        if proc is not None:
            proc.stop()
        kubectl("delete", "csr", *names, "--ignore-not-found", "--wait=false", check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
