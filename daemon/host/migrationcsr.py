"""The node's migration certificate: a key made here, signed by the operator's migration CA through a Kubernetes CSR.

With ``--migration-csr`` (the chart sets it) the agent keeps a certificate
from the migration CA in its ``--migration-pki-dir``: when there is none, or
it ends within a third of its life, or it names another address than the
node's migration address, the agent

1. waits until its Host publishes that address (``status.hypervisor.migrationAddress``),
2. makes a new P-256 key in memory (the key is written only into the node's
   pki folder, never sent anywhere),
3. creates a CertificateSigningRequest of signer ``vapor.io/migration`` naming
   the address, with its pod-bound token (the API server records the node),
4. waits for the operator to sign it (vapor.operator.migration_certs) or deny
   it (the reason is logged; a new request follows after a while),
5. installs the certificate and the CA after it, in libvirt's and QEMU's
   layouts, and asks the node's libvirtd to load them
   (``virt-admin server-update-tls libvirtd``, in the node's root); a
   libvirtd that serves no TLS yet (the node's first certificate) gets the
   node's admin a warning with the lines for libvirtd.conf and qemu.conf.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vapor import pki
from vapor.kube import Conflict, Kube, KubeError
from vapor.model import Host, names

from .migrationpki import MigrationPKI, qemu_gid

log = logging.getLogger("vapor.agent.migration")

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
USAGES = ["digital signature", "key encipherment", "server auth", "client auth"]


class Denied(Exception):
    """The operator refused the request (or it failed); the message says why."""


def current(folder: MigrationPKI, address: str) -> x509.Certificate | None:
    """The installed certificate when it names ``address`` and has more than a third of its life left."""
    if not folder.installed():
        return None
    try:
        cert = x509.load_pem_x509_certificate(folder.server_cert.read_bytes())
        ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.IPAddress
        )
    except (ValueError, x509.ExtensionNotFound):
        return None
    if ipaddress.ip_address(address) not in ips:
        return None
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return None if pki.expires_within(cert, life / 3) else cert


def signing_request(node: str, address: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PKCS#10 request (PEM) for the node's certificate naming its migration address."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(pki.name(f"vapor-migration:{node}"))
    builder = builder.add_extension(x509.SubjectAlternativeName(pki.alt_names([address])), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_object(name: str, request: bytes) -> dict[str, Any]:
    """The CertificateSigningRequest of a PEM request, for the operator's migration CA."""
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request).decode(),
            "signerName": names.MIGRATION_SIGNER,
            "usages": USAGES,
        },
    }


def split_chain(pem: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The issued certificate and the CA certificates after it."""
    certs = x509.load_pem_x509_certificates(pem)
    return certs[0], certs[1:]


class MigrationCertificate:
    """Keeps this node's migration certificate signed and installed."""

    def __init__(
        self,
        kube: Kube,
        node: str,
        address: str,
        folder: MigrationPKI,
        host: Callable[[], Host | None],
        host_root: Path = Path("/"),
        wait: float = 300.0,
    ) -> None:
        self.kube = kube
        self.node = node
        self.address = address
        self.folder = folder
        self.host = host
        self.host_root = host_root
        self.wait = wait  # seconds a request may stay undecided before a new one is made

    async def run(self, check_every: float = 3600.0, retry: float = 30.0) -> None:
        """Renew when needed, for ever (errors are logged and tried again)."""
        while True:
            try:
                await self.ensure()
                await asyncio.sleep(check_every)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                log.warning("no migration certificate yet", extra={"error": str(exc), "retry_in": retry})
                await asyncio.sleep(retry)

    def _published(self) -> bool:
        host = self.host()
        info = host.status.hypervisor if host and host.status else None
        return bool(info and info.migration_address == self.address)

    async def ensure(self) -> bool:
        """Request and install a certificate when the one installed will not do; whether it requested one."""
        if current(self.folder, self.address) is not None:
            return False
        while not self._published():  # the operator signs only the address the Host publishes
            await asyncio.sleep(1.0)
        key = pki.new_key()
        request = signing_request(self.node, self.address, key)
        digest = hashlib.sha256(
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).hexdigest()
        name = f"vapor-migration-{self.node}-{digest[:10]}"[:253]
        with contextlib.suppress(Conflict):  # made already (the same key): wait for it
            await self.kube.request("POST", CSR_PATH, body=csr_object(name, request))
        log.info("asked for a migration certificate", extra={"csr": name, "address": self.address})
        chain = await self._signed(name)
        cert, cas = split_chain(chain)
        if cert.public_key() != key.public_key() or not cas:
            raise Denied(f"CSR {name}: the certificate is not for this node's key, or comes without its CA")
        cert.verify_directly_issued_by(cas[0])
        self.folder.install(
            b"".join(pki.cert_pem(c) for c in cas), pki.cert_pem(cert), pki.key_pem(key), qemu_gid(self.host_root)
        )
        log.info("installed the migration certificate", extra={"until": cert.not_valid_after_utc.isoformat()})
        await self._reload()
        return True

    async def _signed(self, name: str) -> bytes:
        deadline = asyncio.get_running_loop().time() + self.wait
        while asyncio.get_running_loop().time() < deadline:
            try:
                obj = await self.kube.request("GET", f"{CSR_PATH}/{name}")
            except KubeError as exc:
                log.warning("could not read the certificate request", extra={"csr": name, "error": str(exc)})
                obj = {}
            status = obj.get("status") or {}
            for c in status.get("conditions") or []:
                if c.get("type") in ("Denied", "Failed"):
                    raise Denied(f"CSR {name} {c['type'].lower()}: {c.get('message') or c.get('reason')}")
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            await asyncio.sleep(1.0)
        raise Denied(f"CSR {name} was not signed within {int(self.wait)} s (is the operator's migration CA there?)")

    async def _reload(self) -> None:
        """Ask the node's libvirtd to serve the new certificate (virt-admin in the node's root, when there is one)."""
        root = self.host_root
        if not (root / "usr/bin/virt-admin").exists() or (root != Path("/") and shutil.which("chroot") is None):
            self._not_served("libvirtd must be restarted (or virt-admin server-update-tls libvirtd run) to serve it")
            return
        argv = ["virt-admin", "-c", "libvirtd:///system", "server-update-tls", "libvirtd"]
        if root != Path("/"):
            argv = ["chroot", str(root), *argv]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        output = out.decode(errors="replace")
        if "no tls service" in output:  # libvirtd runs without --listen or listen_tls: the node's first certificate
            self._not_served("libvirtd serves no TLS yet: add these lines, then restart libvirtd with --listen")
        elif proc.returncode:
            log.warning("libvirtd did not reload its TLS files", extra={"output": output[-300:]})
        else:
            log.info("libvirtd serves the new migration certificate")

    def _not_served(self, message: str) -> None:
        """Tell the node's admin how to point libvirtd and QEMU at the certificate (daemon/README.md's lines)."""
        log.warning(
            message,
            extra={"libvirtd_conf": self.folder.libvirtd_conf(self.address), "qemu_conf": self.folder.qemu_conf()},
        )
