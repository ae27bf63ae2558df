"""Power actions: the metadata and spec each one patches, and the status that tells it is done.

Plain functions, so that tests can check each action's plan without a server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineSpec
from vapor.model.names import REQUESTED_BY_ANNOTATION, RESTART_ANNOTATION, STOP_MODE_ANNOTATION
from vapor.model.virtualmachine import RunStrategy

from ._vmschema import Action

TARGET_PHASE: dict[Action, str | None] = {
    "start": "Running",
    "resume": "Running",
    "stop": "Stopped",
    "pause": "Paused",
    "restart": None,  # done when status.lastRestartRequest carries the request's value
}
RUN_STRATEGY: dict[Action, RunStrategy | None] = {
    "start": "Running",
    "resume": "Running",
    "stop": "Halted",
    "pause": "Paused",
    "restart": None,
}


@dataclass(frozen=True)
class Plan:
    """What an action changes, and how to recognise that the agent carried it out."""

    action: Action
    force: bool
    metadata: MetadataPatch
    spec: VirtualMachineSpec | None  # partial: only the run strategy, when the action changes it
    target_phase: str | None
    restart_value: str | None

    def done(self, vm: VirtualMachine | None) -> bool:
        """Whether the VM's status shows the action carried out."""
        if vm is None or vm.status is None:
            return False
        if self.restart_value is not None:
            return vm.status.last_restart_request == self.restart_value
        return vm.status.phase == self.target_phase

    def failed(self, vm: VirtualMachine | None, generation: int) -> bool:
        """Whether the agent, having seen the change (``generation``), reports the VM Failed.

        A VM that had failed before the change does not count: starting it may work now.
        """
        status = vm.status if vm is not None else None
        return (
            status is not None
            and status.phase == "Failed"
            and (status.observed_generation or 0) >= generation
            and self.restart_value is None
        )

    def settled(self, vm: VirtualMachine | None, generation: int) -> bool:
        """Whether waiting is over: done, or failed."""
        return self.done(vm) or self.failed(vm, generation)

    def outcome(self, vm: VirtualMachine | None, generation: int, waited: float) -> str:
        """The sentence of the answer."""
        if self.done(vm):
            return f"{self.action} completed"
        if self.failed(vm, generation):
            return f"{self.action} failed: the virtual machine is in phase Failed"
        if waited > 0:
            return f"{self.action} requested; the agent has not reported the result within {waited:g} s"
        return f"{self.action} requested"

    def describe(self, username: str) -> str:
        """The sentence of the audit Event."""
        how = " with force (power off)" if self.action == "stop" and self.force else ""
        return f"User {username!r} requested {self.action}{how} through the REST API"


def restart_value(previous: str | None) -> str:
    """A new restart-request value: the time, unique against the previous one."""
    value = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value if value != previous else value + "-1"


def plan(action: Action, force: bool, username: str, vm: VirtualMachine) -> Plan:
    """The merge patch for ``action`` on ``vm``, made by ``username`` (a None annotation is removed)."""
    annotations: dict[str, str | None] = {REQUESTED_BY_ANNOTATION: username}
    restart: str | None = None
    strategy = RUN_STRATEGY[action]
    if action == "stop":
        annotations[STOP_MODE_ANNOTATION] = "force" if force else None
    elif action in ("start", "resume"):
        annotations[STOP_MODE_ANNOTATION] = None
    elif action == "restart":
        restart = restart_value((vm.metadata.annotations or {}).get(RESTART_ANNOTATION))
        annotations[RESTART_ANNOTATION] = restart
    return Plan(
        action=action,
        force=force,
        metadata=MetadataPatch(annotations=annotations),
        spec=VirtualMachineSpec.partial(run_strategy=strategy) if strategy is not None else None,
        target_phase=TARGET_PHASE[action],
        restart_value=restart,
    )
