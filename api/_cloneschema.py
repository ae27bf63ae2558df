"""Request model of POST /api/v1/vms/{id}/clone: the new VM's name, and how its disks are copied."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vapor.model.cloudinit import HOSTNAME_PATTERN
from vapor.model.snapshot import VM_NAME_PATTERN
from vapor.model.virtualmachine import DNS_LABEL_PATTERN

from ._schema import Strict


class CloneRequest(Strict):
    """A new VM made as a copy of this one, in the same namespace and on the same host.

    The clone gets the source's spec (CPU, memory, disks, networks, firmware,
    cloud-init) with new MAC addresses and its own cloud-init instance-id (its
    id), so cloud-init runs again at its first boot: a new hostname, new SSH
    host keys.
    """

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the new VM (a DNS label).")
    snapshot: str | None = Field(
        default=None,
        pattern=VM_NAME_PATTERN,
        max_length=253,
        description=(
            "Copy the disks as this Ready VirtualMachineSnapshot of the VM kept them; the VM may keep running. "
            "Without it the VM must be stopped (409 otherwise)."
        ),
    )
    full_copy: bool = Field(
        default=False,
        description=(
            "false (linked): a disk that is an overlay on an Image stays one, holding only the source's own "
            "changes, made in the time those take to copy; true: every disk is copied whole and stands alone."
        ),
    )
    hostname: str | None = Field(
        default=None,
        pattern=HOSTNAME_PATTERN,
        max_length=253,
        description="The clone's hostname (cloud-init local-hostname); the clone's name when left out.",
    )
    run_strategy: Literal["Halted", "Running"] = Field(
        default="Halted", description="Running: start the clone once its disks are copied; Halted: leave it stopped."
    )
