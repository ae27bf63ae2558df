"""What a VirtualMachine's status says, decided from its domain's state: plain functions, no I/O.

The agent owns phase, domainUuid, addresses, lastRestartRequest,
observedGeneration and the Ready condition; status.host, status.hostId and
the Scheduled condition belong to the operator and are never written here.
"""

from __future__ import annotations

from typing import Any, Literal

import libvirt  # type: ignore[import-untyped]

from vapor.model import Condition, VirtualMachine, names

ACTIVE = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
OFF = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE)
Ready = tuple[Literal["True", "False", "Unknown"], str, str]  # status, reason, message


def phase_of(state: int | None, strategy: str, stopping: bool) -> str:
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
    phase: str,
    ready: Ready,
    domain_uuid: str | None = None,
    addresses: list[str] | None = None,
    restart_done: str | None = None,
) -> dict[str, Any]:
    """The agent's part of the status (camelCase, as server-side apply sends it).

    Keeps the domain UUID and the last restart request already stored when
    none is given, and the Ready condition's transition time while its status
    stays the same.
    """
    previous = vm.status
    generation = vm.metadata.generation
    status: dict[str, Any] = {"phase": phase, "observedGeneration": generation}
    if uuid := domain_uuid or (previous.domain_uuid if previous else None):
        status["domainUuid"] = uuid
    if addresses:
        status["addresses"] = addresses
    if restart := restart_done or (previous.last_restart_request if previous else None):
        status["lastRestartRequest"] = restart
    ready_now = Condition.after(
        vm.condition(names.ConditionType.READY),
        type=names.ConditionType.READY,
        status=ready[0],
        reason=ready[1],
        message=ready[2],
        observed_generation=generation,
    )
    status["conditions"] = [ready_now.to_api()]
    return status


def unchanged(vm: VirtualMachine, status: dict[str, Any]) -> bool:
    """Whether the stored status already says what ``status`` says (the transition time aside)."""
    if vm.status is None:
        return False
    stored = vm.status.to_api()
    for key in ("phase", "observedGeneration", "domainUuid", "addresses", "lastRestartRequest"):
        if stored.get(key) != status.get(key):
            return False
    wanted = Condition.model_validate(status["conditions"][0])
    current = vm.condition(names.ConditionType.READY)
    return (
        wanted.says_same_as(current)
        and current is not None
        and current.observed_generation == wanted.observed_generation
    )
