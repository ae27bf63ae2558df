"""Host: one Linux server of the fleet (cluster-scoped).

The spec is what a person wants of the machine (maintenance, interface state
and addresses); the status is what its agent observed there, the inventory the
REST API serves under ``/hosts``, ``/system``, ``/network`` and ``/storage``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._meta import Condition, Model, Quantity, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource
from .names import ConditionType

INTERFACE_NAME_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9_.:@-]{0,14}$"
IP_ADDRESS_PATTERN = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$"
# vCPUs a host offers per logical CPU when neither the Host nor the operator says otherwise
# (as KubeVirt's cpuAllocationRatio); memory is never over-committed.
DEFAULT_CPU_ALLOCATION_RATIO = 10
CIDR_PATTERN = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}/([0-9]|[12][0-9]|3[0-2])|[0-9a-fA-F:]*:[0-9a-fA-F:.]*/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))$"


class InterfaceSpec(Model):
    """Desired state of one network interface; fields left out are not managed."""

    name: str = Field(
        description="Kernel name of the interface (at most 15 characters), for example eth0.",
        pattern=INTERFACE_NAME_PATTERN,
    )
    kind: Literal["bridge", "dummy", "bond"] | None = Field(
        default=None,
        description=(
            "Create the interface as this kind of virtual link when it does not exist "
            "(the agent reports a kernel without the driver). Left out: the interface must exist."
        ),
    )
    state: Literal["up", "down"] | None = Field(
        default=None, description="Administrative state: up or down. Left out: not managed."
    )
    mtu: int | None = Field(default=None, ge=68, le=65535, description="MTU in bytes (68 to 65535).")
    addresses: list[Annotated[str, StringConstraints(pattern=CIDR_PATTERN)]] | None = Field(
        default=None,
        max_length=64,
        description=(
            "Addresses in CIDR notation (192.0.2.10/24, 2001:db8::1/64). When set, the agent "
            "makes the interface carry exactly these addresses."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    gateway: str | None = Field(
        default=None,
        description="Default gateway reached through this interface (an IPv4 or IPv6 address).",
        pattern=IP_ADDRESS_PATTERN,
    )


class HostSpec(Model):
    """What a person wants of a host."""

    maintenance: bool = Field(
        default=False,
        description=(
            "Put the host in maintenance: no new VirtualMachine is placed on it and the "
            "operator migrates its running VMs to other hosts."
        ),
    )
    cpu_allocation_ratio: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "Virtual CPUs this host may give to VMs per logical CPU (1: no over-commit). Left out: the "
            f"operator's cluster-wide ratio (chart value operator.cpuAllocationRatio, default {DEFAULT_CPU_ALLOCATION_RATIO}). "
            "Memory is never over-committed."
        ),
    )
    interfaces: list[InterfaceSpec] | None = Field(
        default=None,
        max_length=256,
        description="Desired state of network interfaces, by name; interfaces not listed are left alone.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                {
                    "rule": "self.filter(i, has(i.gateway)).size() <= 1",
                    "message": "only one interface may carry the default gateway",
                }
            ],
        },
    )


class CPUInfo(Model):
    """The host's processors."""

    model: str | None = Field(default=None, description="Processor model name, as /proc/cpuinfo gives it.")
    cores: int | None = Field(default=None, ge=0, description="Physical cores.")
    threads: int | None = Field(default=None, ge=0, description="Logical CPUs (hardware threads).")
    usage_percent: float | None = Field(
        default=None, ge=0, le=100, description="CPU busy, in percent, over the last sample."
    )
    frequency_mhz: float | None = Field(
        default=None, ge=0, description="Current frequency in MHz, where the kernel tells it."
    )


class MemoryInfo(Model):
    """The host's memory, in bytes."""

    total: int | None = Field(default=None, ge=0, description="Installed memory in bytes.")
    available: int | None = Field(default=None, ge=0, description="Memory available to new work, in bytes.")
    used: int | None = Field(default=None, ge=0, description="Memory in use, in bytes.")
    usage_percent: float | None = Field(default=None, ge=0, le=100, description="Memory in use, in percent.")
    swap_total: int | None = Field(default=None, ge=0, description="Swap space in bytes.")
    swap_used: int | None = Field(default=None, ge=0, description="Swap in use, in bytes.")


class InterfaceStatistics(Model):
    """Counters of an interface since it appeared."""

    rx_bytes: int = Field(default=0, ge=0, description="Bytes received.")
    tx_bytes: int = Field(default=0, ge=0, description="Bytes sent.")
    rx_packets: int = Field(default=0, ge=0, description="Packets received.")
    tx_packets: int = Field(default=0, ge=0, description="Packets sent.")


class InterfaceStatus(Model):
    """One network interface as the agent sees it."""

    name: str = Field(description="Kernel name of the interface.")
    mac: str | None = Field(default=None, description="Hardware address, for example 00:11:22:33:44:55.")
    mtu: int | None = Field(default=None, ge=0, description="MTU in bytes.")
    state: str | None = Field(default=None, description="Operational state: up, down or unknown.")
    type: str | None = Field(
        default=None, description="Kind of interface: ethernet, loopback, bridge, veth, vxlan, tun and so on."
    )
    addresses: list[Annotated[str, StringConstraints(pattern=CIDR_PATTERN)]] | None = Field(
        default=None, description="Addresses in CIDR notation."
    )
    statistics: InterfaceStatistics | None = Field(default=None, description="Traffic counters.")


class PartitionStatus(Model):
    """A partition, or a whole device that carries a filesystem."""

    name: str = Field(description="Kernel name, for example sda1.")
    path: str = Field(description="Device path, for example /dev/sda1.")
    size: int = Field(default=0, ge=0, description="Size in bytes.")
    filesystem: str | None = Field(default=None, description="Filesystem type (ext4, xfs, ...), empty if none.")
    label: str | None = Field(default=None, description="Filesystem label.")
    uuid: str | None = Field(default=None, description="Filesystem UUID.")
    mount_point: str | None = Field(default=None, description="Where it is mounted, empty if not mounted.")
    used: int | None = Field(default=None, ge=0, description="Bytes used, when mounted.")
    available: int | None = Field(default=None, ge=0, description="Bytes available, when mounted.")


class DiskStatus(Model):
    """A block device of the host with its partitions."""

    name: str = Field(description="Kernel name, for example sda or loop3.")
    path: str = Field(description="Device path, for example /dev/sda.")
    size: int = Field(default=0, ge=0, description="Size in bytes.")
    model: str | None = Field(default=None, description="Model as the device reports it.")
    type: Literal["ssd", "hdd", "virtual", "unknown"] = Field(
        default="unknown", description="ssd, hdd (rotational), virtual (loop, virtio without rotation info) or unknown."
    )
    partitions: list[PartitionStatus] | None = Field(default=None, description="Partitions of the device.")


class HypervisorInfo(Model):
    """What the host can run, from libvirt's capabilities."""

    driver: str | None = Field(default=None, description="libvirt driver, for example QEMU.")
    version: str | None = Field(default=None, description="Hypervisor version, for example 7.2.0.")
    libvirt_version: str | None = Field(default=None, description="libvirt version of the host.")
    arch: str | None = Field(default=None, description="Host CPU architecture, for example x86_64.")
    cpu_model: str | None = Field(
        default=None, description="Host CPU model as libvirt names it; migrations compare it."
    )
    cpu_vendor: str | None = Field(default=None, description="Host CPU vendor.")
    cpu_features: list[str] | None = Field(default=None, description="CPU features libvirt reports.")
    kvm: bool | None = Field(default=None, description="Whether hardware virtualization (KVM) is usable.")
    domain_types: list[str] | None = Field(default=None, description="Domain types the host supports (kvm, qemu).")
    migration_address: str | None = Field(
        default=None,
        description=(
            "Address (IPv4 or IPv6) where this host's libvirtd takes migrations, written by the host's own agent "
            "only; a source dials qemu+<its transport>://<this address>/system, and over TLS the host's "
            "certificate from the migration CA must name it."
        ),
        pattern=IP_ADDRESS_PATTERN,
    )
    migration_uri: str | None = Field(
        default=None,
        description=(
            "The libvirt URI a source with this host's transport dials to migrate VMs here (for people to read; "
            "sources build the URI from migrationAddress and their own transport, never from this field)."
        ),
    )


class HostCapacity(Model):
    """Resources a host offers to virtual machines."""

    cpu: int | None = Field(
        default=None,
        ge=0,
        description="Logical CPUs that VMs may use; the operator gives out this many times the CPU allocation ratio as vCPUs.",
    )
    memory: Quantity | None = Field(default=None, description="Memory that VMs may use (a quantity, for example 30Gi).")


class HostResources(Model):
    """CPU and memory of a host, as the operator counts them for placement."""

    cpu: int = Field(default=0, ge=0, description="Virtual CPUs.")
    memory: int = Field(default=0, ge=0, description="Memory in bytes.")


class DrainStatus(Model):
    """Progress of moving the VMs off a host in maintenance."""

    phase: Literal["Draining", "Drained", "Failed"] = Field(description="Draining, Drained (empty) or Failed.")
    remaining: int = Field(default=0, ge=0, description="VirtualMachines still on the host.")
    message: str | None = Field(default=None, description="What the drain is waiting for.")


class AgentEndpoint(Model):
    """Where the gateway reaches the host's agent (its node-local API), written by the agent."""

    url: str = Field(
        description="Base URL of the node-local API, for example https://10.0.0.5:9443.",
        pattern=r"^https?://[^/\\s]+$",
        max_length=300,
    )
    cert_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the agent's self-signed serving certificate (DER, hex); the gateway pins it.",
        pattern=r"^[0-9a-f]{64}$",
    )


class HostStatus(Model):
    """What the host's agent observed (the operator writes only Ready changes and drain)."""

    id: str | None = Field(
        default=None,
        description="Stable UUID of the machine: never changes for the machine, across restarts.",
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    )
    hostname: str | None = Field(default=None, description="The machine's hostname.")
    os: str | None = Field(default=None, description="Operating system, for example Debian GNU/Linux 12 (bookworm).")
    kernel: str | None = Field(default=None, description="Kernel release, for example 6.1.0-18-amd64.")
    uptime_seconds: int | None = Field(default=None, ge=0, description="Seconds since the machine booted.")
    boot_time: datetime | None = Field(default=None, description="When the machine booted.")
    load_average: list[float] | None = Field(
        default=None, min_length=3, max_length=3, description="Load average over 1, 5 and 15 minutes."
    )
    cpu: CPUInfo | None = Field(default=None, description="Processors.")
    memory: MemoryInfo | None = Field(default=None, description="Memory.")
    interfaces: list[InterfaceStatus] | None = Field(
        default=None,
        description="Network interfaces with addresses and counters.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    disks: list[DiskStatus] | None = Field(
        default=None,
        description="Block devices with their partitions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    hypervisor: HypervisorInfo | None = Field(default=None, description="Virtualization capabilities.")
    capacity: HostCapacity | None = Field(default=None, description="What the host offers to VMs.")
    vm_count: int | None = Field(
        default=None, ge=0, description="VirtualMachines placed on this host (written by the operator)."
    )
    allocatable: HostResources | None = Field(
        default=None,
        description=(
            "What the operator may give to VMs here (written by the operator): capacity.cpu times the "
            "CPU allocation ratio, and capacity.memory."
        ),
    )
    allocated: HostResources | None = Field(
        default=None,
        description=(
            "What the VMs placed here and the VMs admitted migrations are bringing here take "
            "(written by the operator); placement keeps it within allocatable."
        ),
    )
    drain: DrainStatus | None = Field(default=None, description="Progress of a maintenance drain (operator).")
    sync_cursor: int | None = Field(
        default=None,
        ge=0,
        description="Unix time of the last inventory the agent wrote: tells stale data at a glance.",
    )
    agent_endpoint: AgentEndpoint | None = Field(
        default=None, description="The agent's node-local API, which only the gateway may call."
    )
    api_interface: str | None = Field(
        default=None,
        description=(
            "Interface that carries the node's route to the Kubernetes API server (written by the agent); "
            "the gateway refuses to bring it down or readdress it unless asked to force."
        ),
    )
    conditions: list[Condition] | None = conditions_field("host")


class Host(Resource[HostSpec, HostStatus]):
    """A Linux server of the fleet, kept true by the Vapor agent running on it.

    The agent creates its own Host and writes the inventory into status; a
    person sets spec to put the host into maintenance or to configure its
    network interfaces.
    """

    kind: Literal["Host"] = "Host"
    spec: HostSpec = Field(default_factory=HostSpec, description="What a person wants of the host.")
    status: HostStatus | None = Field(default=None, description="What the agent observed on the host.")

    crd = CRDInfo(
        plural="hosts",
        scope="Cluster",
        short_names=("vhost",),
        printer_columns=(
            PrinterColumn(
                "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Agent heartbeat is fresh."
            ),
            PrinterColumn("Hostname", ".status.hostname"),
            PrinterColumn("VMs", ".status.vmCount", "integer", "VirtualMachines placed here."),
            PrinterColumn("CPU", ".status.capacity.cpu", "integer", "Logical CPUs offered to VMs."),
            PrinterColumn("Memory", ".status.capacity.memory", description="Memory offered to VMs."),
            PrinterColumn("vCPUs", ".status.allocated.cpu", "integer", "Virtual CPUs given to VMs.", priority=1),
            PrinterColumn(
                "Allocatable", ".status.allocatable.cpu", "integer", "Virtual CPUs the host may give.", priority=1
            ),
            PrinterColumn("Maintenance", ".spec.maintenance", "boolean", priority=1),
            PrinterColumn("Kernel", ".status.kernel", priority=1),
            PrinterColumn("ID", ".status.id", priority=1),
            AGE,
        ),
    )

    def missing_label(self, selector: Mapping[str, str] | None) -> tuple[str, str] | None:
        """The first ``key, value`` of a label selector this Host does not carry, or None when it carries all."""
        labels = self.metadata.labels or {}
        return next(((k, v) for k, v in (selector or {}).items() if labels.get(k) != v), None)

    @property
    def is_ready(self) -> bool:
        """Whether the Ready condition is True (the agent's heartbeat is fresh)."""
        ready = self.condition(ConditionType.READY)
        return ready is not None and ready.status == "True"

    @property
    def host_id(self) -> str | None:
        """status.id: the machine's stable id, once its agent reported it."""
        return self.status.id if self.status else None


def find_host(hosts: Iterable[Host], name_or_id: str) -> Host | None:
    """A Host by resource name, else by its stable id (status.id)."""
    hosts = list(hosts)
    by_name = next((h for h in hosts if h.name == name_or_id), None)
    return by_name or next((h for h in hosts if h.host_id == name_or_id), None)
