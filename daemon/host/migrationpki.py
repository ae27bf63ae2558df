"""Where a node's migration certificates live, how libvirtd and QEMU are told, and the URI a source dials.

Every libvirtd that takes part in migrations over ``qemu+tls`` holds one
certificate from the migration CA, used both as server (other hosts' libvirtd
connect to it) and as client (it connects to them), naming the node's
migration address (SAN). One folder (``--migration-pki-dir``, default
``<state-dir>/pki``) keeps them in the two layouts the readers expect:

- ``libvirt/``: ``cacert.pem``, ``servercert.pem``, ``serverkey.pem``,
  ``clientcert.pem``, ``clientkey.pem`` (root only). libvirtd's server side
  reads it through ``ca_file``/``cert_file``/``key_file`` in libvirtd.conf
  (:func:`libvirtd_conf`); its client side, when it dials another host
  peer-to-peer, through ``?pkipath=`` in the URI the source builds.
- ``qemu/``: ``ca-cert.pem``, ``server-cert.pem``, ``server-key.pem``,
  ``client-cert.pem``, ``client-key.pem`` for QEMU's own TLS migration stream
  (``migrate_tls_x509_cert_dir`` in qemu.conf, :func:`qemu_conf`); QEMU runs
  as its own user, so the keys there are readable by that user's group.

Only the source decides the URI: ``qemu+<transport>://<address>/system``
with the *target Host's* ``status.hypervisor.migrationAddress`` (an IP
address that only the target node's agent may write, see the chart's
node-identity policy) and the source's own transport. Nothing the target
publishes can choose the scheme, the port or the path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Transport = Literal["tls", "tcp"]
QEMU_USERS = ("libvirt-qemu", "qemu")  # the user QEMU runs as on Debian/Ubuntu, on Fedora/RHEL


@dataclass(frozen=True)
class MigrationPKI:
    """The certificate files of one node under ``folder``."""

    folder: Path

    @property
    def libvirt(self) -> Path:
        """The folder in libvirt's layout (root only)."""
        return self.folder / "libvirt"

    @property
    def qemu(self) -> Path:
        """QEMU's layout (its group may read)."""
        return self.folder / "qemu"

    @property
    def ca_cert(self) -> Path:
        """The migration CA."""
        return self.libvirt / "cacert.pem"

    @property
    def server_cert(self) -> Path:
        """The node's certificate."""
        return self.libvirt / "servercert.pem"

    @property
    def server_key(self) -> Path:
        """The node's private key."""
        return self.libvirt / "serverkey.pem"

    def installed(self) -> bool:
        """Whether both layouts hold a CA, a certificate and a key."""
        names = ("cacert.pem", "clientcert.pem", "clientkey.pem", "servercert.pem", "serverkey.pem")
        qemu = ("ca-cert.pem", "client-cert.pem", "client-key.pem", "server-cert.pem", "server-key.pem")
        return all((self.libvirt / n).exists() for n in names) and all((self.qemu / n).exists() for n in qemu)

    def install(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, qemu_gid: int | None = None) -> None:
        """Write the CA, the node's certificate and its key in both layouts (keys 0600; QEMU's 0640 to its group)."""
        from vapor import pki  # cryptography, loaded by the agents that take part in TLS migrations only

        self.libvirt.mkdir(parents=True, exist_ok=True)
        self.libvirt.chmod(0o700)
        self.qemu.mkdir(parents=True, exist_ok=True)
        self.qemu.chmod(0o750 if qemu_gid is not None else 0o755)
        if qemu_gid is not None:
            _chgrp(self.qemu, qemu_gid)
        (self.libvirt / "cacert.pem").write_bytes(ca_pem)
        (self.qemu / "ca-cert.pem").write_bytes(ca_pem)
        for side in ("server", "client"):
            (self.libvirt / f"{side}cert.pem").write_bytes(cert_pem)
            pki.write_private(self.libvirt / f"{side}key.pem", key_pem)
            (self.qemu / f"{side}-cert.pem").write_bytes(cert_pem)
            key = self.qemu / f"{side}-key.pem"
            pki.write_private(key, key_pem, 0o640 if qemu_gid is not None else 0o644)
            if qemu_gid is not None:
                _chgrp(key, qemu_gid)
        for path in (*self.libvirt.glob("*cert.pem"), *self.qemu.glob("*cert.pem")):
            path.chmod(0o644)

    def libvirtd_conf(self, listen_addr: str | None = None) -> str:
        """The libvirtd.conf lines of a daemon that takes migrations over TLS with these files."""
        lines = [
            "listen_tls = 1",
            "listen_tcp = 0",  # nothing in clear: migrations come over TLS only
            'auth_tls = "none"',  # the client certificate from the migration CA is the authentication
            "tls_no_verify_certificate = 0",
            f'ca_file = "{self.ca_cert}"',
            f'cert_file = "{self.server_cert}"',
            f'key_file = "{self.server_key}"',
        ]
        if listen_addr:
            lines.append(f'listen_addr = "{listen_addr}"')
        return "\n".join(lines) + "\n"

    def qemu_conf(self) -> str:
        """The qemu.conf lines that make QEMU's migration stream use these files and check its peer."""
        return f'migrate_tls_x509_cert_dir = "{self.qemu}"\nmigrate_tls_x509_verify = 1\n'


def qemu_gid(host_root: Path = Path("/")) -> int | None:
    """The primary group of the user QEMU runs as, from the node's passwd (None when no usual user exists)."""
    try:
        lines = (host_root / "etc/passwd").read_text().splitlines()
    except OSError:
        return None
    users = {f[0]: f[3] for f in (line.split(":") for line in lines) if len(f) > 3 and f[3].isdigit()}
    return next((int(users[u]) for u in QEMU_USERS if u in users), None)


def _chgrp(path: Path, gid: int) -> None:
    os.chown(path, -1, gid)


def migration_uri(address: str, transport: Transport, pki_dir: Path | None) -> str:
    """The URI a source's libvirtd dials to reach the target at ``address`` (IPv6 in brackets)."""
    host = f"[{address}]" if ":" in address else address
    uri = f"qemu+{transport}://{host}/system"
    if transport == "tls" and pki_dir is not None:
        uri += f"?pkipath={MigrationPKI(pki_dir).libvirt}"
    return uri
