"""Several libvirt hosts on this machine, for migration tests (the recipe of TESTBED.md).

``Testbed(n)`` makes, with unique names and a random private subnet per run:

- a hub network namespace holding one bridge, and per host a network
  namespace whose ``eth0`` is a veth pair with its other end on that bridge
  (everything is created inside the namespaces: the machine's own interfaces
  are never touched);
- per host a libvirtd in a private mount namespace that bind-mounts the
  host's own copies of /etc/libvirt, /run/libvirt, /var/lib/libvirt,
  /var/cache/libvirt (copied: QEMU's capabilities are cached, the daemon
  starts fast) and /var/log/libvirt, listening at the host's address with a
  distinct host UUID (qemu.conf: stdio_handler "file", no cgroup
  controllers, no namespaces, migration_host = the address);
- with ``transport="tls"`` (the default) a migration CA made for the run, and
  per host a certificate naming the host's address, installed in
  ``<host>/pki`` in libvirt's and QEMU's layouts (the agent's
  ``vapor.agent.host.migrationpki``): the daemons listen with TLS only, check
  their peers' certificates, and QEMU's migration stream uses them too. Hosts
  listed in ``foreign_ca`` get their certificate from a second CA instead
  (and trust both): a peer the others must refuse, as its target and as its
  source. ``transport="tcp"``:
  plain, unauthenticated TCP, as a dev setting;
- the root namespace reaches each daemon through its UNIX socket:
  ``qemu+unix:///system?socket=<run dir>/libvirt-sock`` (``Host.uri``), and the
  daemons reach each other at ``qemu+tls://<address>/system?pkipath=...``
  (``Host.migration_uri``; ``qemu+tcp://`` with tcp).

``close()`` destroys every domain, stops the daemons, deletes the namespaces
and the folders, even after a failure half-way; it is idempotent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from vapor import pki
from vapor.agent.host.migrationpki import MigrationPKI, Transport, migration_uri, qemu_gid

from .libvirtd import make_kvm_usable
from .processes import terminate

_VALIDITY = dt.timedelta(days=1)
MOUNTS = ("etc/libvirt", "run/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Host:
    """One libvirt host: its network namespace, address, folder and libvirtd."""

    index: int
    netns: str
    address: str
    root: Path
    transport: Transport = "tls"
    process: subprocess.Popen[bytes] | None = None
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def uri(self) -> str:
        """How the root namespace (the agent, the test) reaches this host's libvirtd."""
        return f"qemu+unix:///system?socket={self.root / 'run/libvirt/libvirt-sock'}"

    @property
    def pki(self) -> MigrationPKI:
        """This host's migration certificates (with transport tls)."""
        return MigrationPKI(self.root / "pki")

    @property
    def migration_uri(self) -> str:
        """How another host's libvirtd reaches this one (with that host's certificates: use its pki folder)."""
        return migration_uri(self.address, self.transport, self.pki.folder)

    def agent_args(self) -> tuple[str, ...]:
        """The agent's migration flags for this host."""
        return (
            "--migration-address",
            self.address,
            "--migration-transport",
            self.transport,
            "--migration-pki-dir",
            str(self.pki.folder),
        )

    def connect(self) -> libvirt.virConnect:
        """A new connection to this host's libvirtd."""
        return libvirt.open(self.uri)

    def log(self) -> str:
        """libvirtd's own log."""
        try:
            return (self.root / "libvirtd.log").read_text(errors="replace")
        except OSError:
            return ""


def prepare(host: Host, certify: Callable[[Host], None] | None = None, listen: bool = True) -> None:
    """The host's own copies of libvirt's folders and settings (``certify`` makes its tls certificate).

    ``listen=False``: no network settings, for a libvirtd started without ``--listen`` (``add_settings`` later).
    """
    root = host.root
    root.mkdir(mode=0o755)
    for parent in ("etc", "run", "var/lib", "var/cache", "var/log"):
        (root / parent).mkdir(parents=True, exist_ok=True)
    _run("cp", "-a", "/etc/libvirt", str(root / "etc/libvirt"))
    _run("cp", "-a", "/var/lib/libvirt", str(root / "var/lib/libvirt"))
    if Path("/var/cache/libvirt").exists():
        _run("cp", "-a", "/var/cache/libvirt", str(root / "var/cache/libvirt"))
    for empty in ("run/libvirt", "var/log/libvirt/qemu", "var/cache/libvirt"):
        (root / empty).mkdir(parents=True, exist_ok=True)
    for p in (root / "var/lib", root / "var", root / "etc", root / "run", root / "var/cache", root / "var/log"):
        p.chmod(0o755)
    # Nothing of the machine's own daemon: no defined domains, networks or pools start here.
    etc = root / "etc/libvirt"
    for pattern in ("qemu/*.xml", "qemu/autostart/*", "qemu/networks/autostart/*", "storage/autostart/*"):
        for path in etc.glob(pattern):
            path.unlink()
    add_settings(
        host,
        f'host_uuid = "{host.host_uuid}"\nlog_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n',
        f'stdio_handler = "file"\ncgroup_controllers = [ ]\nnamespaces = [ ]\nmigration_host = "{host.address}"\n',
    )
    if not listen:
        return
    if host.transport == "tls":
        assert certify is not None, "a tls host needs its certificate"
        certify(host)
        add_settings(host, host.pki.libvirtd_conf(host.address), host.pki.qemu_conf())
    else:
        add_settings(host, f'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "{host.address}"\n', "")


def add_settings(host: Host, libvirtd: str, qemu: str) -> None:
    """Add settings to the host's libvirtd.conf and qemu.conf (read at libvirtd's next start)."""
    etc = host.root / "etc/libvirt"
    for name, lines in (("libvirtd.conf", libvirtd), ("qemu.conf", qemu)):
        if lines:
            with (etc / name).open("a") as conf:
                conf.write(f"\n# vapor testbed host\n{lines}")


def libvirtd_script(root: Path, listen: bool = True, bind: bool = True) -> str:
    """The shell command that starts a host's libvirtd in its mount namespace (``bind``: over libvirt's folders)."""
    binds = "".join(f"mount --bind {root / m} /{m} && " for m in MOUNTS) if bind else ""
    flags = "--listen " if listen else ""
    return f"{binds}exec libvirtd {flags}-f /etc/libvirt/libvirtd.conf -p {root / 'libvirtd.pid'}"


def wait_started(host: Host, timeout: float) -> None:
    """Wait until the host's libvirtd (``host.process``) answers on its socket; its output if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            libvirt.open(host.uri).close()
            return
        except libvirt.libvirtError as exc:
            assert host.process is not None
            if host.process.poll() is not None or time.monotonic() > deadline:
                out = (host.root / "libvirtd.out").read_text(errors="replace")
                raise RuntimeError(f"libvirtd of host {host.index} ({host.netns}) did not start: {exc}\n{out}") from exc
        time.sleep(0.1)


def stop(host: Host) -> None:
    """Destroy the host's domains and stop its libvirtd (idempotent)."""
    if host.process is None:
        return
    if host.process.poll() is None:
        with contextlib.suppress(libvirt.libvirtError):
            conn = host.connect()
            try:
                for dom in conn.listAllDomains(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
            finally:
                conn.close()
        terminate(host.process, 15)
    host.process = None


class Testbed:
    """``count`` hosts joined by one bridge; use as a context manager or call ``close()``."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(
        self,
        count: int = 2,
        start_timeout: float = 60.0,
        transport: Transport = "tls",
        foreign_ca: Collection[int] = (),
    ) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.base = Path(tempfile.mkdtemp(prefix=f"vapor-hosts-{self.tag}-", dir="/var/tmp"))
        self.base.chmod(0o755)
        self.hub = f"vhub-{self.tag}"
        subnet = f"10.{random.randint(160, 250)}.{random.randint(0, 255)}"
        self.hosts = [
            Host(i, f"vhost-{self.tag}-{i}", f"{subnet}.{i + 1}", self.base / f"h{i}", transport) for i in range(count)
        ]
        self.transport = transport
        self.foreign_ca = set(foreign_ca)
        self.start_timeout = start_timeout
        self._namespaces: list[str] = []
        self._cas: tuple[tuple[x509.Certificate, ec.EllipticCurvePrivateKey], ...] | None = None

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Testbed:
        """Make the network, then start every libvirtd and wait until each answers."""
        try:
            make_kvm_usable()
            self._network()
            for host in self.hosts:
                self._prepare(host)
                self._launch(host)
            for host in self.hosts:
                self._wait(host)
        except BaseException:
            self.close()
            raise
        return self

    # -- network -------------------------------------------------------------------------------
    def _netns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _network(self) -> None:
        self._netns(self.hub)
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        for host in self.hosts:
            self._netns(host.netns)
            port = f"p{host.index}"
            # Made inside the hub; the peer goes straight into the host's namespace.
            _run("ip", "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _run("ip", "-n", self.hub, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run("ip", "-n", host.netns, "link", "set", "eth0", "up")

    # -- libvirtd ------------------------------------------------------------------------------
    def _prepare(self, host: Host) -> None:
        prepare(host, self._certify)

    def _certify(self, host: Host) -> None:
        """The host's certificate (server and client, naming its address) from the run's CA, or the foreign one."""
        if self._cas is None:
            self._cas = (
                pki.make_ca(f"vapor-testbed-{self.tag}", _VALIDITY),
                pki.make_ca(f"vapor-testbed-{self.tag}-foreign", _VALIDITY),
            )
        ca, ca_key = self._cas[1 if host.index in self.foreign_ca else 0]
        key = pki.new_key()
        cert = pki.issue(
            pki.name(f"vapor-testbed-{self.tag}-{host.index}"),
            key.public_key(),
            ca_key,
            issuer=ca.subject,
            validity=_VALIDITY,
            usage=pki.SERVER_AND_CLIENT,
            sans=pki.alt_names([host.address]),
        )
        # A foreign host trusts the run's CA as well: what it must fail on is its own certificate, not its trust.
        trusted = pki.cert_pem(ca) + (pki.cert_pem(self._cas[0][0]) if host.index in self.foreign_ca else b"")
        host.pki.install(trusted, pki.cert_pem(cert), pki.key_pem(key), qemu_gid())

    def _launch(self, host: Host) -> None:
        out = (host.root / "libvirtd.out").open("wb")
        script = libvirtd_script(host.root)
        host.process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def _wait(self, host: Host) -> None:
        wait_started(host, self.start_timeout)

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything this testbed made (idempotent, survives half-made state)."""
        for host in self.hosts:
            stop(host)
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._namespaces.clear()
        shutil.rmtree(self.base, ignore_errors=True)
