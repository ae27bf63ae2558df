"""Certificates for the local control plane.

A CA, the API server's serving certificate (loopback names and the ``kubernetes``
Service's address), an admin
client certificate and the service-account signing key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from vapor import pki

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class PKI:
    """Paths of the files the control plane and its clients use."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def exists(self) -> bool:
        """Whether every file is there already (a restarted dev cluster reuses them)."""
        files = (
            self.ca_cert,
            self.serving_cert,
            self.serving_key,
            self.admin_cert,
            self.admin_key,
            self.sa_key,
            self.sa_pub,
        )
        return all(f.exists() for f in files)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pki.write_private(path, pki.key_pem(key))


def generate(directory: Path) -> PKI:
    """Write a fresh CA, serving cert (loopback only), admin cert and service-account key."""
    directory.mkdir(parents=True, exist_ok=True)
    files = PKI(directory)

    ca, ca_key = pki.make_ca("vapor-dev-ca", _VALIDITY)
    files.ca_cert.write_bytes(pki.cert_pem(ca))

    def signed(path: Path, key_path: Path, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[str]) -> None:
        key = pki.new_key()
        cert = pki.issue(
            subject,
            key.public_key(),
            ca_key,
            issuer=ca.subject,
            validity=_VALIDITY,
            usage=[usage],
            sans=pki.alt_names(sans),
        )
        path.write_bytes(pki.cert_pem(cert))
        _write_key(key_path, key)

    # 10.0.0.1: the ``kubernetes`` Service's address (controlplane.KUBERNETES_SERVICE), which pods dial.
    sans = ["localhost", "kubernetes.default.svc", "kubernetes.default", "127.0.0.1", "::1", "10.0.0.1"]
    signed(files.serving_cert, files.serving_key, pki.name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    # system:masters is bound to cluster-admin by the API server's bootstrap policy.
    admin = pki.name("vapor-admin", "system:masters")
    signed(files.admin_cert, files.admin_key, admin, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    sa_key = pki.new_key()
    _write_key(files.sa_key, sa_key)
    files.sa_pub.write_bytes(sa_key.public_key().public_bytes(pki.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return files
