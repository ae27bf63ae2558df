"""The typed model of Vapor's custom resources, shared by every component.

Each kind is a pydantic model whose field names are snake_case in Python and
camelCase on the wire; the CRDs under ``crds/`` are generated from these
classes (:mod:`vapor.crdgen`), so the two cannot drift apart.
"""

from . import names
from ._meta import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    MetadataPatch,
    Model,
    ObjectMeta,
    Quantity,
    parse_quantity,
    quantity_bytes,
)
from ._resource import CRDInfo, PrinterColumn, Resource
from .cloudinit import CloudInitSpec
from .host import Host, HostSpec, HostStatus, InterfaceSpec, find_host
from .image import Image, ImageHostStatus, ImageSpec, ImageStatus
from .migration import Migration, MigrationSpec, MigrationStatus
from .mount import Mount, MountSpec, MountStatus
from .snapshot import (
    VirtualMachineRestore,
    VirtualMachineRestoreSpec,
    VirtualMachineRestoreStatus,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotSpec,
    VirtualMachineSnapshotStatus,
)
from .virtualmachine import (
    CloneSource,
    DiskSpec,
    GuestInterface,
    NetworkSpec,
    VirtualMachine,
    VirtualMachineSpec,
    VirtualMachineStatus,
)

KINDS: tuple[type[Resource], ...] = (  # type: ignore[type-arg]
    Host,
    VirtualMachine,
    Migration,
    Mount,
    Image,
    VirtualMachineSnapshot,
    VirtualMachineRestore,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "CRDInfo",
    "CloneSource",
    "CloudInitSpec",
    "Condition",
    "ConditionStatus",
    "DiskSpec",
    "GuestInterface",
    "Host",
    "HostSpec",
    "HostStatus",
    "Image",
    "ImageHostStatus",
    "ImageSpec",
    "ImageStatus",
    "InterfaceSpec",
    "MetadataPatch",
    "Migration",
    "MigrationSpec",
    "MigrationStatus",
    "Model",
    "Mount",
    "MountSpec",
    "MountStatus",
    "NetworkSpec",
    "ObjectMeta",
    "PrinterColumn",
    "Quantity",
    "Resource",
    "VirtualMachine",
    "VirtualMachineRestore",
    "VirtualMachineRestoreSpec",
    "VirtualMachineRestoreStatus",
    "VirtualMachineSnapshot",
    "VirtualMachineSnapshotSpec",
    "VirtualMachineSnapshotStatus",
    "VirtualMachineSpec",
    "VirtualMachineStatus",
    "find_host",
    "names",
    "parse_quantity",
    "quantity_bytes",
]
