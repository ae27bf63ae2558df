"""The agent's settings, from the command line with defaults from the environment."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vapor.logs import add_format_flag
from vapor.model import names, quantity_bytes

from .host.address import join_bind, node_address
from .host.migrationpki import MigrationPKI, Transport

DomainType = Literal["auto", "kvm", "qemu"]

DEFAULT_STATE_DIR = Path("/var/lib/vapor")
NODE_API_PORT = 9443  # the node-local API's port when --api-bind is not given
LIBVIRT_IMAGES = Path("/var/lib/libvirt/images")  # libvirt's default storage pool


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to know about its node and how often to act."""

    node_name: str
    kubeconfig: str | None = None
    libvirt_uri: str = "qemu:///system"
    state_dir: Path = DEFAULT_STATE_DIR
    storage_dir: Path | None = None  # None: <state_dir>/disks
    lease_namespace: str = names.LEASE_NAMESPACE
    lease_duration_seconds: int = 40
    lease_renew_seconds: float = 10.0
    inventory_interval: float = 60.0  # volatile numbers at most this often
    scan_interval: float = 5.0  # how soon a structural change (a new interface, a disk) is written
    resync_interval: float = 300.0  # reconcile every VM this often even without a change
    reserved_memory: int = 512 * 2**20  # kept for the host, not offered to VMs
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_bind: str | None = None  # address:port of /metrics, /healthz, /readyz; None: not served
    docker_host: str = "unix:///var/run/docker.sock"  # "" : do not use Docker
    cri_sockets: tuple[str, ...] = ("/run/containerd/containerd.sock", "/run/crio/crio.sock")
    api_bind: str = ""  # address:port of the node-local API ("": not served); the command line defaults it
    api_allowed_user: str = "system:serviceaccount:vapor-system:vapor-gateway"  # the only caller of the node API
    api_tls: bool = True  # self-signed certificate, fingerprint published in Host status
    host_root: Path = Path("/")  # the node's root filesystem as the agent sees it ("/host" in the chart)
    mount_namespace_pid: int | None = None  # Mounts are made in this process's mount namespace (chart: 1)
    pam_service: str = "login"  # the PAM service of logins (node API /accounts) and terminals (/ws/terminal)
    terminal_allow_root: bool = False  # whether an account with uid 0 may have a terminal
    terminal_check_interval: float = 30.0  # seconds between checks that a terminal's account may still log in
    login_fail_delay: float = 2.0  # seconds a refused password's answer waits (per account; see vapor.loginguard)
    login_backoff_max: float = 60.0  # the longest an account that keeps failing is not checked
    netns: str | None = None  # network namespace whose interfaces the agent manages (None: its own)
    network_probe: str | None = None  # host:port whose reach tells "cut off" (None: the API server)
    network_resync: float = 30.0  # seconds between network passes without any event
    network_rollback_grace: float = 60.0  # seconds cut off before a network change is undone
    migration_transport: Transport = "tls"  # how this node's libvirtd dials others: qemu+tls, or qemu+tcp (dev/test)
    migration_address: str | None = None  # where this node's libvirtd takes migrations (None: the node's address)
    migration_pki_dir: Path | None = None  # the migration certificates (None: <state_dir>/pki)
    migration_csr: bool = False  # ask the operator's migration CA for the certificate (the chart's way)
    image_dirs: tuple[Path, ...] | None = None  # where path disks may be (None: <state_dir>/images, libvirt's)
    block_devices: tuple[str, ...] = ()  # block devices a path disk may name (the node admin's list)
    domain_type: DomainType = "auto"  # kvm or qemu (TCG) domains; auto: kvm when QEMU may use it
    image_cache_dir: Path | None = None  # the content-addressed cache of Images (None: <state_dir>/image-cache)
    image_reserve: int = 2 * 2**30  # an image fetch never leaves the cache's filesystem with less free than this
    image_fetches: int = 2  # Image fetches at once on this host

    @property
    def disk_image_dirs(self) -> tuple[Path, ...]:
        """The folders a VM disk's ``path`` may be in."""
        if self.image_dirs is not None:
            return self.image_dirs
        return (self.state_dir / "images", LIBVIRT_IMAGES)

    @property
    def migration_pki(self) -> MigrationPKI:
        """The folder of this node's migration certificates (see vapor.agent.host.migrationpki)."""
        return MigrationPKI(self.migration_pki_dir or self.state_dir / "pki")

    @property
    def images_cache_dir(self) -> Path:
        """Where fetched Images are kept, named by their sha256 (never an image folder: path disks are written)."""
        return self.image_cache_dir or self.state_dir / "image-cache"

    @property
    def disks_dir(self) -> Path:
        """Where the qcow2 images of size-disks are created."""
        return self.storage_dir or self.state_dir / "disks"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vapor-agent", description="Keep this node's Host and VirtualMachines true.")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="name of this node (default $NODE_NAME)")
    p.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default $KUBECONFIG, else in-cluster)"
    )
    p.add_argument("--libvirt-uri", default="qemu:///system", help="libvirt connection URI")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="holds the stable host id")
    p.add_argument("--storage-dir", type=Path, default=None, help="where disk images are created (<state-dir>/disks)")
    p.add_argument("--lease-namespace", default=names.LEASE_NAMESPACE, help="namespace of the heartbeat Lease")
    p.add_argument("--lease-duration", type=int, default=40, help="leaseDurationSeconds of the heartbeat Lease")
    p.add_argument("--lease-renew-interval", type=float, default=10.0, help="seconds between Lease renewals")
    p.add_argument("--inventory-interval", type=float, default=60.0, help="volatile host numbers at most this often")
    p.add_argument("--scan-interval", type=float, default=5.0, help="seconds between looks at the host's inventory")
    p.add_argument("--resync-interval", type=float, default=300.0, help="seconds between full VM reconciles")
    p.add_argument("--reserved-memory", default="512Mi", help="memory kept for the host, not offered to VMs")
    p.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="Docker daemon for the container endpoints (default $DOCKER_HOST, else the usual socket; '' for none)",
    )
    p.add_argument(
        "--cri-socket",
        action="append",
        dest="cri_sockets",
        help="CRI runtime socket, tried after Docker (repeatable; default containerd's, then CRI-O's)",
    )
    p.add_argument(
        "--metrics-bind",
        default=os.environ.get("VAPOR_METRICS_BIND") or None,
        help="serve /metrics, /healthz and /readyz on address:port, e.g. 0.0.0.0:9090 (default: off)",
    )
    p.add_argument(
        "--api-bind",
        default=os.environ.get("VAPOR_API_BIND"),
        help="serve the node-local API on address:port (default $VAPOR_API_BIND, else $NODE_IP or the address "
        "of the default route, port 9443; '' for none)",
    )
    p.add_argument(
        "--api-allowed-user",
        default=os.environ.get("VAPOR_API_ALLOWED_USER", AgentConfig.api_allowed_user),
        help="the only identity (as a TokenReview names it) that may call the node-local API",
    )
    p.add_argument(
        "--no-api-tls",
        dest="api_tls",
        action="store_false",
        help="serve the node-local API over plain HTTP (debugging only; the bearer token then travels in clear)",
    )
    p.add_argument(
        "--host-root",
        type=Path,
        default=Path(os.environ.get("VAPOR_HOST_ROOT", "/")),
        help="where the node's / is mounted when the agent runs in a container: accounts, logins and terminals "
        "are handled in a chroot there (default $VAPOR_HOST_ROOT, else /)",
    )
    p.add_argument(
        "--mount-namespace-pid",
        type=int,
        default=None,
        help="mount and unmount Mounts in the mount namespace of this process, e.g. 1 (the node's init, with "
        "hostPID) when the agent runs in a container (default: the agent's own)",
    )
    p.add_argument(
        "--pam-service",
        default=os.environ.get("VAPOR_PAM_SERVICE", AgentConfig.pam_service),
        help="PAM service that checks the passwords of logins the gateway forwards and runs terminals' account "
        "and session stages (default $VAPOR_PAM_SERVICE, else login)",
    )
    p.add_argument(
        "--terminal-allow-root",
        action="store_true",
        default=os.environ.get("VAPOR_TERMINAL_ALLOW_ROOT", "").lower() in ("1", "true", "yes"),
        help="let accounts with uid 0 have a terminal (default: refused; $VAPOR_TERMINAL_ALLOW_ROOT=true)",
    )
    p.add_argument(
        "--terminal-check-interval",
        type=float,
        default=AgentConfig.terminal_check_interval,
        help="seconds between checks that a terminal's account may still log in (locked, expired, removed: "
        "the terminal is hung up)",
    )
    p.add_argument(
        "--login-fail-delay",
        type=float,
        default=AgentConfig.login_fail_delay,
        help="seconds a refused password's answer waits, one check per account at a time; after 3 refusals in a "
        "row the account is not checked for this long, doubling up to --login-backoff-max",
    )
    p.add_argument(
        "--login-backoff-max",
        type=float,
        default=AgentConfig.login_backoff_max,
        help="the longest an account that keeps failing is not checked (seconds)",
    )
    p.add_argument("--netns", default=None, help="manage the interfaces of this named network namespace")
    p.add_argument(
        "--network-probe",
        default=None,
        help="host:port whose reachability from the managed namespace means the node is connected "
        "(default: the API server's); its route also names the guarded interface",
    )
    p.add_argument("--network-resync", type=float, default=30.0, help="seconds between network passes without events")
    p.add_argument(
        "--network-rollback-grace",
        type=float,
        default=60.0,
        help="seconds a network change may cut the node off before it is undone",
    )
    p.add_argument(
        "--migration-transport",
        choices=("tls", "tcp"),
        default=os.environ.get("VAPOR_MIGRATION_TRANSPORT") or "tls",
        help="how this node's libvirtd dials the target of a migration: tls (qemu+tls with certificates from "
        "the migration CA, QEMU's stream encrypted too) or tcp (plain, unauthenticated: dev and tests only); "
        "default $VAPOR_MIGRATION_TRANSPORT, else tls",
    )
    p.add_argument(
        "--migration-address",
        default=os.environ.get("VAPOR_MIGRATION_ADDRESS") or None,
        help="IP address where this node's libvirtd takes migrations, published in Host status "
        "(default $VAPOR_MIGRATION_ADDRESS, else $NODE_IP or the address of the default route)",
    )
    p.add_argument(
        "--migration-csr",
        action="store_true",
        help="keep the migration certificate signed by the operator's migration CA: a key made on this node, a "
        "CertificateSigningRequest of signer vapor.io/migration (default: the certificates in --migration-pki-dir "
        "are placed there by the node's admin)",
    )
    p.add_argument(
        "--migration-pki-dir",
        type=Path,
        default=None,
        help="folder of this node's migration certificates, in libvirt's and QEMU's layouts (default <state-dir>/pki)",
    )
    p.add_argument(
        "--image-dir",
        action="append",
        dest="image_dirs",
        type=Path,
        help="a folder whose images VM disks may name by path (repeatable; default <state-dir>/images and "
        "/var/lib/libvirt/images); keep these folders writable by the node's admins only",
    )
    p.add_argument(
        "--block-device",
        action="append",
        dest="block_devices",
        default=[],
        help="a block device a VM disk may name by path, e.g. /dev/disk/by-id/... (repeatable; default: none)",
    )
    p.add_argument(
        "--domain-type",
        choices=("auto", "kvm", "qemu"),
        default=os.environ.get("VAPOR_DOMAIN_TYPE", "auto"),
        help="libvirt domain type of VMs: kvm, qemu (TCG emulation, for a KVM that cannot run the guests), "
        "or auto: kvm when libvirt offers it and QEMU may open /dev/kvm (default $VAPOR_DOMAIN_TYPE, else auto)",
    )
    p.add_argument(
        "--image-cache-dir",
        type=Path,
        default=None,
        help="where Images are fetched to, one file per sha256 (default <state-dir>/image-cache); keep it out "
        "of the --image-dir folders",
    )
    p.add_argument(
        "--image-reserve",
        default="2Gi",
        help="free space an Image fetch must leave on the cache's filesystem; a larger image is Refused "
        "(reason InsufficientStorage)",
    )
    p.add_argument("--image-fetches", type=int, default=2, help="Image fetches at once on this host")
    p.add_argument("--log-level", default=os.environ.get("VAPOR_LOG_LEVEL", "INFO"))
    add_format_flag(p)
    return p


def _nodeapi_bind(flag: str | None) -> str:
    """``--api-bind``, else ``<node address>:9443``."""
    return flag.strip() if flag is not None else join_bind(node_address(), NODE_API_PORT)


def _migration_address(parser: argparse.ArgumentParser, flag: str | None) -> str:
    """``--migration-address`` (an IP address), else the node's address."""
    address = (flag or "").strip() or node_address()
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        parser.error(f"--migration-address must be an IP address, not {address!r}")


def parse_args(argv: list[str] | None = None) -> AgentConfig:
    """Read the command line (and the environment defaults) into an AgentConfig."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.node_name:
        parser.error("a node name is needed: --node-name or $NODE_NAME")
    return AgentConfig(
        node_name=args.node_name,
        kubeconfig=args.kubeconfig,
        libvirt_uri=args.libvirt_uri,
        state_dir=args.state_dir,
        storage_dir=args.storage_dir,
        lease_namespace=args.lease_namespace,
        lease_duration_seconds=args.lease_duration,
        lease_renew_seconds=args.lease_renew_interval,
        inventory_interval=args.inventory_interval,
        scan_interval=args.scan_interval,
        resync_interval=args.resync_interval,
        reserved_memory=quantity_bytes(args.reserved_memory),
        log_level=args.log_level.upper(),
        log_format=args.log_format,
        metrics_bind=args.metrics_bind,
        docker_host=args.docker_host,
        cri_sockets=tuple(args.cri_sockets) if args.cri_sockets is not None else AgentConfig.cri_sockets,
        api_bind=_nodeapi_bind(args.api_bind),
        api_allowed_user=args.api_allowed_user,
        api_tls=args.api_tls,
        host_root=args.host_root,
        mount_namespace_pid=args.mount_namespace_pid,
        pam_service=args.pam_service,
        terminal_allow_root=args.terminal_allow_root,
        terminal_check_interval=args.terminal_check_interval,
        login_fail_delay=args.login_fail_delay,
        login_backoff_max=args.login_backoff_max,
        netns=args.netns or None,
        network_probe=args.network_probe or None,
        network_resync=args.network_resync,
        network_rollback_grace=args.network_rollback_grace,
        migration_transport=args.migration_transport,
        migration_address=_migration_address(parser, args.migration_address),
        migration_pki_dir=args.migration_pki_dir,
        migration_csr=args.migration_csr,
        image_dirs=tuple(args.image_dirs) if args.image_dirs else None,
        block_devices=tuple(args.block_devices),
        domain_type=args.domain_type,
        image_cache_dir=args.image_cache_dir,
        image_reserve=quantity_bytes(args.image_reserve),
        image_fetches=max(1, args.image_fetches),
    )
