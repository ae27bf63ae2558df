"""X.509 helpers every Vapor certificate is made with: P-256 keys, a CA, certificates it signs, PEM files.

Used by the node API's self-signed serving certificate (vapor.agent.nodeapi.tls),
the migration CA and the certificates it signs (vapor.agent.host.migrationpki,
vapor.operator.migration_certs) and the dev control plane (vapor.devenv).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(PEM)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write secret bytes to a file created with ``mode`` (never readable by others in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(mode)


def name(cn: str, org: str | None = None) -> x509.Name:
    """A subject or issuer name: CN, and O when given."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def alt_names(addresses: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names: an IP address entry for each address, a DNS name for anything else."""
    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    return sans


def issue(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name | None = None,
    validity: dt.timedelta,
    ca: bool = False,
    usage: Iterable[x509.ObjectIdentifier] = (),
    sans: Iterable[x509.GeneralName] = (),
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signer`` (self-signed when ``issuer`` is None)."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage := list(usage):
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans := list(sans):
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_ca(cn: str, validity: dt.timedelta) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA certificate and its key."""
    key = new_key()
    return issue(name(cn), key.public_key(), key, ca=True, validity=validity), key


def expires_within(cert: x509.Certificate, margin: dt.timedelta) -> bool:
    """Whether the certificate ends within ``margin`` from now (or has ended)."""
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) <= margin
