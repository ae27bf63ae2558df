"""What a VirtualMachine's status says, decided from its domain's state: plain functions, no I/O.

The agent owns phase, domainUuid, addresses, lastRestartRequest,
observedGeneration and the Ready condition; status.host, status.hostId and
the Scheduled condition belong to the operator and are never written here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import libvirt  # type: ignore[import-untyped]

from vapor.model import VirtualMachine, names

ACTIVE = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
OFF = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE)
Ready = tuple[str, str, str]  # status, reason, message


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
    conditions = (previous.conditions or []) if previous else []
    old = next((c for c in conditions if c.type == names.ConditionType.READY), None)
    kept = old is not None and old.status == ready[0] and old.last_transition_time is not None
    when = old.last_transition_time if kept and old is not None else None
    status["conditions"] = [
        {
            "type": names.ConditionType.READY,
            "status": ready[0],
            "reason": ready[1],
            "message": ready[2],
            "observedGeneration": generation,
            "lastTransitionTime": (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]
    return status


def unchanged(vm: VirtualMachine, status: dict[str, Any]) -> bool:
    """Whether the stored status already says what ``status`` says (the transition time aside)."""
    if vm.status is None:
        return False
    stored = vm.status.to_api()
    for key in ("phase", "observedGeneration", "domainUuid", "addresses", "lastRestartRequest"):
        if stored.get(key) != status.get(key):
            return False
    ready = next((c for c in stored.get("conditions") or [] if c.get("type") == names.ConditionType.READY), None)
    wanted = status["conditions"][0]
    return ready is not None and all(
        ready.get(k) == wanted[k] for k in ("status", "reason", "message", "observedGeneration")
    )
