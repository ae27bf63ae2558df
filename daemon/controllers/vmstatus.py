"""What a VirtualMachine's status says, decided from its domain's state: plain functions, no I/O.

The agent owns phase, domainUuid, addresses, interfaces, lastRestartRequest,
pendingChanges, observedGeneration and the Ready, RestartRequired, AgentConnected,
ImageReady and Cloned conditions; status.host, status.hostId and the Scheduled condition belong to
the operator and are never written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import libvirt  # type: ignore[import-untyped]

from vapor.model import VirtualMachine, VirtualMachineStatus, names
from vapor.model.virtualmachine import GuestInterface, VMPhase

ACTIVE = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
OFF = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE)
Ready = tuple[Literal["True", "False", "Unknown"], str, str]  # status, reason, message
Other = tuple[str, Literal["True", "False", "Unknown"], str, str]  # type, status, reason, message


class VMError(Exception):
    """A VM cannot be made as its spec asks; ``reason`` goes into the Ready condition.

    ``waiting``: for something that may yet come (a Secret): the VM is Pending, and looked at again soon.
    ``leaves_domain``: the domain was not touched, so a running one is reported as it runs (not Failed).
    ``condition``: another condition the failure sets (ImageReady False for an Image unusable here).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        waiting: bool = False,
        leaves_domain: bool = False,
        condition: Other | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.waiting = waiting
        self.leaves_domain = leaves_domain
        self.condition = condition


def phase_of(state: int | None, strategy: str, stopping: bool) -> VMPhase:
    """The VM's phase from its domain's state (None: no domain) and what it should be."""
    if state is None:
        return "Stopped" if strategy == "Halted" else "Starting"
    if state in RUNNING:
        return "Stopping" if stopping else "Running"
    if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return "Stopping" if stopping else "Paused"
    if state == libvirt.VIR_DOMAIN_SHUTDOWN:
        return "Stopping"
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return "Failed"
    return "Stopped" if strategy == "Halted" else "Starting"


def ready_of(state: int | None, strategy: str, phase: str) -> Ready:
    """The Ready condition: whether the domain is as the run strategy asks."""
    wanted = {"Running": RUNNING, "Paused": (libvirt.VIR_DOMAIN_PAUSED,), "Halted": OFF}[strategy]
    if state in wanted or (state is None and strategy == "Halted"):
        return "True", phase, f"The domain is {phase.lower()}, as runStrategy {strategy} asks."
    return "False", phase, f"The domain is {phase.lower()}; runStrategy asks for {strategy}."


def build(
    vm: VirtualMachine,
    *,
    phase: VMPhase,
    ready: Ready,
    domain_uuid: str | None = None,
    addresses: list[str] | None = None,
    interfaces: list[GuestInterface] | None = None,
    restart_done: str | None = None,
    pending_changes: list[str] | None = None,
    others: Sequence[Other] = (),
) -> VirtualMachineStatus:
    """The agent's part of the status: every field it owns, set (None where it has nothing to say).

    Keeps the domain UUID and the last restart request already stored when
    none is given, and the Ready condition's transition time while its status
    stays the same. A server-side apply sends the fields that are not None;
    the others the agent gives up. ``others``: the agent's conditions besides
    Ready that hold now (one it leaves out is given up, so it goes away).
    """
    previous = vm.status
    return VirtualMachineStatus(
        phase=phase,
        observed_generation=vm.metadata.generation,
        domain_uuid=domain_uuid or (previous.domain_uuid if previous else None),
        addresses=addresses or None,
        interfaces=interfaces or None,
        last_restart_request=restart_done or (previous.last_restart_request if previous else None),
        pending_changes=pending_changes or None,
        conditions=[
            vm.condition_after(names.ConditionType.READY, *ready),
            *(vm.condition_after(kind, status, reason, message) for kind, status, reason, message in others),
        ],
    )


# The conditions the agent writes on a VM (the operator's Scheduled is not among them).
AGENT_CONDITIONS = frozenset(
    {
        names.ConditionType.READY,
        names.ConditionType.RESTART_REQUIRED,
        names.ConditionType.AGENT_CONNECTED,
        names.ConditionType.IMAGE_READY,
        names.ConditionType.CLONED,
    }
)


def unchanged(vm: VirtualMachine, status: VirtualMachineStatus) -> bool:
    """Whether the stored status already says what ``status`` says (the transition time aside)."""
    stored = vm.status
    if stored is None:
        return False
    owned = status.model_fields_set - {"conditions"}
    if any(getattr(stored, name) != getattr(status, name) for name in owned):
        return False
    wanted = status.conditions or []
    stored_types = {c.type for c in stored.conditions or [] if c.type in AGENT_CONDITIONS}
    if stored_types != {c.type for c in wanted}:
        return False  # one to add, or one the agent gives up
    for condition in wanted:
        current = vm.condition(condition.type)
        if not condition.says_same_as(current) or current is None:
            return False
        if current.observed_generation != condition.observed_generation:
            return False
    return True
