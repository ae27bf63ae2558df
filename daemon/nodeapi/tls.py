"""The node API's serving certificate: self-signed, kept in ``<state-dir>/nodeapi/``, pinned by the gateway.

The agent publishes the certificate's SHA-256 fingerprint in
``Host.status.agentEndpoint.certSha256``; the gateway accepts no other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vapor import pki

log = logging.getLogger("vapor.agent.nodeapi")

CERT_VALIDITY = dt.timedelta(days=825)
CERT_RENEW_BEFORE = dt.timedelta(days=30)


def load_or_make_cert(folder: Path, address: str) -> tuple[Path, Path]:
    """The serving certificate and key under ``folder``, made (self-signed, P-256) when missing or expiring."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    if cert_path.exists() and key_path.exists():
        try:
            if not pki.expires_within(x509.load_pem_x509_certificate(cert_path.read_bytes()), CERT_RENEW_BEFORE):
                return cert_path, key_path
        except ValueError:
            pass
    key = pki.new_key()
    subject = pki.name(f"vapor-agent {socket.gethostname()}")
    sans = [x509.DNSName("localhost"), *pki.alt_names([address])]
    cert = pki.issue(subject, key.public_key(), key, validity=CERT_VALIDITY, sans=sans)
    pki.write_private(key_path, pki.key_pem(key))
    cert_path.write_bytes(pki.cert_pem(cert))
    log.info("made the node API's serving certificate", extra={"path": str(cert_path)})
    return cert_path, key_path


def cert_sha256(cert_path: Path) -> str:
    """Lower-case hex SHA-256 of the certificate's DER form (what the gateway pins)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
