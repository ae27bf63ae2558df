"""The migration CA: the operator signs each node's migration certificate, for that node's own address only.

An agent makes its key on its node (the key never leaves it) and asks for a
certificate with a Kubernetes CertificateSigningRequest of signer
``vapor.io/migration`` (vapor.agent.host.migrationcsr). The API server writes
who asked into the CSR's spec (username, and for a pod-bound token the pod's
node as ``authentication.kubernetes.io/node-name``); nobody can set those
fields. The operator approves and signs when:

- the request comes from the agents' ServiceAccount (``VAPOR_MIGRATION_AGENT_USER``)
  with a token bound to a pod on a node N;
- it asks for exactly one name, an IP address: Host N's
  ``status.hypervisor.migrationAddress`` (a field only N's agent may write, by
  the node-identity policy), which no other Host claims, and which is one of
  the addresses of the Node object N when that has any (the kubelet's word);

and denies it, saying why, otherwise. The certificate it signs is its own
making, whatever else the request asks: CN ``vapor-migration:N``, that one IP
address, server and client use. ``status.certificate`` holds it followed by
the CA certificate, which the agent installs as the CA its libvirtd trusts.

The CA is the Secret ``VAPOR_MIGRATION_CA_SECRET`` (``tls.crt``, ``tls.key``)
in ``VAPOR_MIGRATION_CA_NAMESPACE``. With ``VAPOR_MIGRATION_CA_CREATE`` the
operator makes it (a self-signed P-256 CA, 10 years) when it does not exist;
else something else does (cert-manager, from the Issuer named in the chart's
values) and the operator waits for it. No Secret name: no signing at all.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vapor import pki
from vapor.kube import Conflict, Kube, NotFound
from vapor.model import Host, names

from ._state import Memo

log = logging.getLogger("vapor.operator.migration_certs")

SIGNER = names.MIGRATION_SIGNER
NODE_EXTRA = "authentication.kubernetes.io/node-name"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CA_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CASettings:
    """Where the CA is and whom the operator signs for (from the environment the chart sets)."""

    secret: str = os.environ.get("VAPOR_MIGRATION_CA_SECRET", "")
    namespace: str = os.environ.get("VAPOR_MIGRATION_CA_NAMESPACE", "vapor-system")
    create: bool = os.environ.get("VAPOR_MIGRATION_CA_CREATE", "true").lower() in ("1", "true", "yes")
    agent_user: str = os.environ.get("VAPOR_MIGRATION_AGENT_USER", "")
    validity: dt.timedelta = dt.timedelta(days=int(os.environ.get("VAPOR_MIGRATION_CERT_DAYS", "365")))


class Refused(Exception):
    """A request the operator denies; the message goes into the CSR's Denied condition."""


def requested_node(spec: dict[str, Any], agent_user: str) -> str:
    """The node whose agent asked: from the API server's record of the requester, never from the request."""
    if not agent_user or spec.get("username") != agent_user:
        raise Refused(f"only the Vapor agents ({agent_user or 'none configured'}) get migration certificates")
    nodes = (spec.get("extra") or {}).get(NODE_EXTRA) or []
    if len(nodes) != 1 or not nodes[0]:
        raise Refused("the request was not made with a token bound to a pod on a node")
    return str(nodes[0])


def requested_address(request: x509.CertificateSigningRequest) -> str:
    """The one IP address a request asks for (no DNS names, no second address)."""
    if not request.is_signature_valid:
        raise Refused("the request's signature does not match its key")
    if not isinstance(request.public_key(), ec.EllipticCurvePublicKey):
        raise Refused("the request's key is not an elliptic-curve key")
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise Refused("the request names no address") from None
    ips = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    if len(ips) != 1 or len(list(names)) != 1:
        raise Refused(f"a request must name exactly one IP address, not {[str(n.value) for n in names]}")
    return ips[0]


def check_address(node: str, address: str, hosts: list[Host], node_addresses: list[str]) -> None:
    """The address is the node's Host's migration address, no other Host's, and the Node's when it lists any."""
    own = next((h for h in hosts if h.name == node), None)
    published = own.status.hypervisor.migration_address if own and own.status and own.status.hypervisor else None
    if not published:
        raise Refused(f"Host {node} publishes no migration address")
    if ipaddress.ip_address(published) != ipaddress.ip_address(address):
        raise Refused(f"node {node} may have a certificate for its Host's migration address {published}, not {address}")
    for other in hosts:
        info = other.status.hypervisor if other.status else None
        if other.name != node and info and info.migration_address and info.migration_address == published:
            raise Refused(f"address {address} is claimed by Host {other.name} too")
    if node_addresses and address not in node_addresses:
        raise Refused(f"address {address} is not one of Node {node}'s addresses {node_addresses}")


def sign(
    request: x509.CertificateSigningRequest,
    node: str,
    address: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    validity: dt.timedelta,
) -> bytes:
    """The node's certificate (our subject, the one address, server and client use), then the CA's, as PEM."""
    public_key = request.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert = pki.issue(
        pki.name(f"vapor-migration:{node}"),
        public_key,
        ca[1],
        issuer=ca[0].subject,
        validity=min(validity, ca[0].not_valid_after_utc - dt.datetime.now(dt.UTC)),
        usage=pki.SERVER_AND_CLIENT,
        sans=pki.alt_names([address]),
    )
    return pki.cert_pem(cert) + pki.cert_pem(ca[0])


async def load_ca(kube: Kube, settings: CASettings) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA from its Secret, made first when the operator may; None while it does not exist."""
    path = f"/api/v1/namespaces/{settings.namespace}/secrets"
    try:
        secret = await kube.request("GET", f"{path}/{settings.secret}")
    except NotFound:
        if not settings.create:
            return None
        cert, key = pki.make_ca("vapor-migration-ca", CA_VALIDITY)
        data = {"tls.crt": pki.cert_pem(cert), "tls.key": pki.key_pem(key)}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": settings.secret, "namespace": settings.namespace},
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            secret = await kube.request("POST", path, body=body)
            log.info("made the migration CA", extra={"secret": f"{settings.namespace}/{settings.secret}"})
        except Conflict:
            # Another request's handler (at start-up the operator decides every pending CSR at once), or
            # another replica, made it first: use theirs. A handler that failed here would lose its CSR:
            # kopf does not retry event handlers.
            secret = await kube.request("GET", f"{path}/{settings.secret}")
    data = secret.get("data") or {}
    cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    loaded = serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError("the migration CA's key is not an elliptic-curve key")
    return cert, loaded


def _decided(status: dict[str, Any]) -> set[str]:
    return {c.get("type", "") for c in status.get("conditions") or []}


async def _node_addresses(kube: Kube, node: str) -> list[str]:
    try:
        obj = await kube.request("GET", f"/api/v1/nodes/{node}")
    except NotFound:
        return []
    return [a["address"] for a in (obj.get("status") or {}).get("addresses") or [] if a.get("address")]


async def decide(kube: Kube, name: str, settings: CASettings) -> None:
    """Approve and sign, or deny, one CSR of our signer (each step once; a retry picks up where it stopped)."""
    body = await kube.request("GET", f"{CSR_PATH}/{name}")  # as it is now, with its resourceVersion
    spec, status = body.get("spec") or {}, body.get("status") or {}
    decided = _decided(status)
    if "Denied" in decided or "Failed" in decided or status.get("certificate"):
        return
    ca = await load_ca(kube, settings)
    if ca is None:  # the agent asks again with a new request after a while
        log.warning("no migration CA yet: a request waits", extra={"csr": name, "secret": settings.secret})
        return
    try:
        node = requested_node(spec, settings.agent_user)
        request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        address = requested_address(request)
        hosts, _ = await kube.resources(Host).list()
        check_address(node, address, hosts, await _node_addresses(kube, node))
    except (Refused, ValueError) as exc:
        await _condition(kube, body, "Denied", "VaporMigrationRefused", str(exc))
        log.warning("migration certificate refused", extra={"csr": name, "why": str(exc)})
        return
    if "Approved" not in decided:
        body = await _condition(kube, body, "Approved", "VaporMigrationNode", f"node {node}, address {address}")
    certificate = sign(request, node, address, ca, settings.validity)
    body["status"]["certificate"] = base64.b64encode(certificate).decode()
    await kube.request("PUT", f"{CSR_PATH}/{name}/status", body=body)
    log.info("signed a migration certificate", extra={"csr": name, "node": node, "address": address})


async def _condition(kube: Kube, body: dict[str, Any], kind: str, reason: str, message: str) -> dict[str, Any]:
    status = body.setdefault("status", {})
    status.setdefault("conditions", []).append(
        {"type": kind, "status": "True", "reason": reason, "message": message[:1000]}
    )
    return await kube.request("PUT", f"{CSR_PATH}/{body['metadata']['name']}/approval", body=body)


async def migration_csr(body: kopf.Body, memo: Any, **_: Any) -> None:
    """A node asks for its migration certificate: decide."""
    state: Memo = memo
    name = body.metadata.name
    if name and state.kube is not None:
        await decide(state.kube, name, CASettings())


if CASettings().secret:  # no CA (the chart's migration.transport tcp): CSRs are neither watched nor decided
    kopf.on.event("certificates.k8s.io", "v1", "certificatesigningrequests", field="spec.signerName", value=SIGNER)(
        migration_csr
    )
