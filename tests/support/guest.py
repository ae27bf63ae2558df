"""What tests of the real Debian guest share (hack/guest-image.sh builds it).

- ``guest_image()``: the cached image (built once by the script, reused
  after): its path, sha256, file size and virtual size.
- ``ImageServer`` (re-exported from tests/support/imageserver.py): a
  loopback HTTP server of one file with Range requests and failure knobs.
- ``make_ssh_key()`` and ``ssh()`` / ``wait_for_ssh()`` /
  ``wait_for_cloud_init()``: an ed25519 key made by the test, and SSH into a
  guest as ``debian`` (no host key checks, batch mode, timeouts), from inside
  a network namespace when given one.
- ``nat_network()``: a libvirt NAT network with DHCP on one Testbed host's
  own libvirtd (inside its network namespace: the machine's networking is
  never touched), removed afterwards.
- ``GuestDomain`` / ``boot_guest()``: the guest started by direct libvirt
  calls (qcow2 overlay on the image, NoCloud seed ISO, a NIC on the NAT
  network, the guest-agent channel), as the baseline of Vapor's own start.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from vapor.agent.host.seediso import write_seed_iso

from .imageserver import ImageServer as ImageServer
from .imageserver import ServedRequest as ServedRequest
from .wait import wait_until

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "hack" / "guest-image.sh"
GUEST_USER = "debian"
# How long a guest may take from start to SSH. Under TCG (see kvm_runs_linux)
# 107 to 242 s were measured while other tests shared the machine's two cores
# (load 5 to 14).
BOOT_TIMEOUT = 420.0


# -- the image -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuestImage:
    """The built guest image in the cache (qcow2)."""

    path: Path
    sha256: str
    size: int
    virtual_size: int


@functools.cache
def guest_image() -> GuestImage:
    """The guest image: built by hack/guest-image.sh on the first call of a run (minutes), else taken from its cache."""
    done = subprocess.run([str(BUILDER)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hack/guest-image.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    path = Path(done.stdout.strip().splitlines()[-1])
    sha256 = (path.parent / f"{path.name}.sha256").read_text().split()[0]
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    return GuestImage(path, sha256, path.stat().st_size, int(info["virtual-size"]))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- SSH -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair made by ssh-keygen: the private key's file and the public key's line."""

    private: Path
    public: str


def make_ssh_key(folder: Path, comment: str = "") -> SshKey:
    """A new key pair without passphrase in ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / "id_ed25519"
    comment = comment or f"vapor-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
        check=True,
        capture_output=True,
    )
    return SshKey(private, (folder / "id_ed25519.pub").read_text().strip())


def ssh(
    address: str,
    key: SshKey,
    command: str,
    *,
    netns: str | None = None,
    user: str = GUEST_USER,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on the guest over SSH (inside ``netns`` when given); never raises for its exit code."""
    args = [
        "ssh", "-i", str(key.private), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6",
        f"{user}@{address}", command,
    ]  # fmt: skip
    if netns:
        args = ["ip", "netns", "exec", netns, *args]
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(args, 255, "", f"ssh timed out after {timeout}s: {exc}")


def wait_for_ssh(address: str, key: SshKey, *, netns: str | None = None, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until the guest accepts the key, and return what ``hostname`` printed there."""

    def probe() -> str | None:
        done = ssh(address, key, "hostname", netns=netns, timeout=30)
        return done.stdout.strip() if done.returncode == 0 else None

    return wait_until(probe, timeout, every=0.25, what=f"SSH as {GUEST_USER}@{address}")


def wait_for_cloud_init(address: str, key: SshKey, *, netns: str | None = None, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until cloud-init has finished in the guest.

    SSH answers before cloud-init's config stage, and that stage restarts
    sshd when it sets ``ssh_pwauth``: a connection refused in between is
    retried, not taken as the guest's answer.
    """

    def settled() -> bool | None:
        done = ssh(address, key, "cloud-init status --wait >/dev/null; echo settled", netns=netns, timeout=timeout)
        return True if done.returncode == 0 and "settled" in done.stdout else None

    wait_until(settled, timeout, every=1, what=f"cloud-init to finish on {address}")


# -- a NAT network inside a Testbed host -----------------------------------------------------------
@dataclass(frozen=True)
class NatNetwork:
    """A libvirt NAT network: its name, bridge and gateway address (a /24 with DHCP)."""

    name: str
    bridge: str
    gateway: str

    def contains(self, address: str) -> bool:
        """Whether ``address`` is in the network's /24."""
        return ipaddress.ip_address(address) in ipaddress.ip_network(f"{self.gateway}/24", strict=False)


@contextlib.contextmanager
def nat_network(conn: libvirt.virConnect) -> Iterator[NatNetwork]:
    """A started NAT network with DHCP on ``conn``, which must be a Testbed host's libvirtd.

    Never the machine's own libvirtd: a NAT network adds a bridge and
    firewall rules in the daemon's network namespace, which for a Testbed
    host is its own.
    """
    tag = uuid.uuid4().hex[:6]
    subnet = f"192.168.{random.randint(16, 250)}"
    net = NatNetwork(f"vapor-nat-{tag}", f"vnat{tag}", f"{subnet}.1")
    xml = f"""<network><name>{net.name}</name><forward mode='nat'/>
<bridge name='{net.bridge}' stp='off' delay='0'/>
<ip address='{net.gateway}' netmask='255.255.255.0'>
<dhcp><range start='{subnet}.10' end='{subnet}.250'/></dhcp></ip></network>"""
    network = conn.networkDefineXML(xml)
    try:
        network.create()
        yield net
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            if network.isActive():
                network.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            network.undefine()


def dhcp_address(conn: libvirt.virConnect, network: NatNetwork, mac: str) -> str | None:
    """The IPv4 address the network's DHCP server leased to ``mac``, if any."""
    for lease in conn.networkLookupByName(network.name).DHCPLeases():
        if lease.get("mac", "").lower() == mac.lower() and lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
            return str(lease["ipaddr"])
    return None


def agent_addresses(domain: libvirt.virDomain) -> dict[str, list[str]]:
    """The guest's addresses by interface name, as the QEMU guest agent reports them ({} when it does not answer)."""
    try:
        found = domain.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
    except libvirt.libvirtError:
        return {}
    return {name: [a["addr"] for a in (iface.get("addrs") or [])] for name, iface in found.items()}


# -- the guest by direct libvirt calls -------------------------------------------------------------
def cloud_config(hostname: str, key: SshKey, instance_id: str) -> tuple[str, str]:
    """meta-data and user-data for a guest with ``hostname`` that lets ``key`` in as ``debian``."""
    meta = f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
    user = f"#cloud-config\nhostname: {hostname}\nssh_authorized_keys:\n  - {key.public}\n"
    return meta, user


def stage_image(image: GuestImage, folder: Path) -> Path:
    """A copy of the image in ``folder``, which QEMU can read (the cache is under /root, which it cannot)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    copy = folder / image.path.name
    if not copy.exists():
        shutil.copyfile(image.path, copy)
        copy.chmod(0o644)
    return copy


def create_overlay(base: Path, overlay: Path, size: int | None = None) -> None:
    """A qcow2 overlay on ``base`` (copy-on-write: the base is never written), grown to ``size`` bytes if given."""
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]
    if size is not None:
        args.append(str(size))
    subprocess.run(args, check=True, capture_output=True)
    overlay.chmod(0o644)


def kvm_runs_linux() -> bool:
    """Whether KVM can run a stock Linux guest here.

    Not under ``kvm_pvm`` (a KVM without hardware virtualization, as this
    project's Firecracker machines have): it runs firmware and a real-mode
    boot sector, but a stock kernel stops at its switch to protected mode.
    There guests run under TCG, slower but the same guest.
    """
    return Path("/dev/kvm").exists() and not Path("/sys/module/kvm_pvm").exists()


_DOMAIN = """<domain type='{type}'><name>{name}</name><memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><features><acpi/></features>
{cpu}<clock offset='utc'/><on_poweroff>destroy</on_poweroff>
<devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/><source file='{overlay}'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{seed}'/>
<target dev='sda' bus='sata'/><readonly/></disk>
<interface type='network'><mac address='{mac}'/><source network='{network}'/><model type='virtio'/></interface>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
<serial type='file'><source path='{console}'/><target port='0'/></serial>
<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
</devices></domain>"""


@dataclass
class GuestDomain:
    """A guest started by direct libvirt calls on a Testbed host; ``destroy()`` removes the domain."""

    conn: libvirt.virConnect
    domain: libvirt.virDomain
    mac: str
    network: NatNetwork
    folder: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def console_log(self) -> str:
        """What the guest printed on its serial console so far."""
        try:
            return (self.folder / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_address(self, timeout: float = 60.0) -> str:
        """The address DHCP leased to the guest's NIC."""
        return wait_until(
            lambda: dhcp_address(self.conn, self.network, self.mac),
            timeout,
            every=0.1,
            what=f"a DHCP lease for {self.mac}",
        )

    def destroy(self) -> None:
        """Stop and undefine the domain (idempotent); the folder is the caller's."""
        with contextlib.suppress(libvirt.libvirtError):
            if self.domain.isActive():
                self.domain.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            self.domain.undefine()


def boot_guest(
    conn: libvirt.virConnect,
    base: Path,
    folder: Path,
    network: NatNetwork,
    key: SshKey,
    hostname: str,
    *,
    memory_mib: int = 512,
    kvm: bool | None = None,
) -> GuestDomain:
    """Start the guest: overlay on ``base`` (a staged image), seed ISO, NIC on ``network``; files go in ``folder``.

    ``kvm`` None: KVM when ``kvm_runs_linux()``, else QEMU's own emulation (TCG).
    """
    if kvm is None:
        kvm = kvm_runs_linux()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    name = f"guest-{hostname}-{uuid.uuid4().hex[:6]}"
    overlay, seed, console = folder / f"{name}.qcow2", folder / f"{name}-seed.iso", folder / "console.log"
    create_overlay(base, overlay)
    meta, user = cloud_config(hostname, key, instance_id=str(uuid.uuid4()))
    write_seed_iso(seed, meta, user)
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in os.urandom(3))
    xml = _DOMAIN.format(
        type="kvm" if kvm else "qemu", cpu="<cpu mode='host-passthrough'/>" if kvm else "", name=name,
        memory=memory_mib, overlay=overlay, seed=seed, mac=mac, network=network.name, console=console,
    )  # fmt: skip
    domain = conn.defineXML(xml)
    guest = GuestDomain(conn, domain, mac, network, folder)
    try:
        guest.started = time.monotonic()
        domain.create()
    except BaseException:
        guest.destroy()
        raise
    return guest
