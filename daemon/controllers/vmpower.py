"""Carries out a VirtualMachine's run strategy on its domain: start, pause, resume, restart and stop.

A stop is graceful first (the ACPI power button) and turns into a power-off
once ``spec.gracefulShutdownSeconds`` have passed, at once when the stop mode
is ``force``. A restart request (the restart annotation) is a power cycle,
carried out once per request value; what was carried out is remembered here
until the VM's status shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import libvirt  # type: ignore[import-untyped]

from vapor.kube._informer import Key, key_of
from vapor.model import VirtualMachine, names

from ..host.libvirt import Libvirt
from .vmstatus import ACTIVE, OFF, RUNNING, VMError

log = logging.getLogger("vapor.agent.vms")

# (vm, reason, note, action): an Event on the VM, and a log line.
Record = Callable[[VirtualMachine, str, str, str], Awaitable[None]]


class Power:
    """The power side of the VM controller: one instance per agent, state kept per VM uid."""

    def __init__(
        self,
        libvirt_conn: Libvirt,
        record: Record,
        look_again: Callable[[Key, float], None],
        before_start: Callable[[VirtualMachine], None],
    ) -> None:
        self.libvirt = libvirt_conn
        self._record = record
        self._look_again = look_again  # queue the VM again after that many seconds
        self._before_start = before_start  # a clone's source is held while its copy starts
        self._stop_deadline: dict[str, float] = {}  # uid -> when a graceful stop turns into power-off
        self._restarted: dict[str, str] = {}  # uid -> restart request carried out (before the cache shows it)

    def restart_done(self, vm: VirtualMachine) -> str | None:
        """The restart request last carried out for ``vm``, for status.lastRestartRequest."""
        return self._restarted.get(vm.metadata.uid or "")

    def stopping(self, vm: VirtualMachine, state: int) -> bool:
        """Whether a graceful stop of ``vm`` is under way (its domain in libvirt ``state``)."""
        uid = vm.metadata.uid or ""
        if state in OFF:
            self._stop_deadline.pop(uid, None)
            return False
        return vm.spec.run_strategy == "Halted" and uid in self._stop_deadline

    def forget(self, vm: VirtualMachine) -> None:
        """Drop what is kept for ``vm`` (its domain is gone)."""
        uid = vm.metadata.uid or ""
        self._stop_deadline.pop(uid, None)
        self._restarted.pop(uid, None)

    def _pending_restart(self, vm: VirtualMachine) -> str | None:
        wanted = (vm.metadata.annotations or {}).get(names.RESTART_ANNOTATION)
        done = vm.status.last_restart_request if vm.status else None
        if not wanted or wanted == done or wanted == self._restarted.get(vm.metadata.uid or ""):
            return None
        return wanted

    async def _start(self, vm: VirtualMachine, dom: libvirt.virDomain, *, paused: bool) -> None:
        self._before_start(vm)
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        try:
            await self.libvirt.call(dom.createWithFlags, flags)
        except libvirt.libvirtError as exc:
            raise VMError("StartFailed", f"the domain did not start: {exc}") from exc

    async def apply(self, vm: VirtualMachine, dom: libvirt.virDomain) -> None:
        """Bring the domain's power state to what the run strategy and a pending restart request ask."""
        uid = vm.metadata.uid or ""
        strategy = vm.spec.run_strategy
        state, _ = await self.libvirt.call(dom.state)
        restart = self._pending_restart(vm)
        if strategy != "Halted":
            self._stop_deadline.pop(uid, None)
        if restart is not None:
            if strategy != "Halted" and state in ACTIVE:
                await self.libvirt.power_off(dom)
                await self._start(vm, dom, paused=strategy == "Paused")
                await self._record(vm, "Restarted", "Restarted the domain (power cycle), as requested.", "Restart")
                self._restarted[uid] = restart
                return
            self._restarted[uid] = restart  # nothing runs: a restart is a start, or nothing when Halted
        if strategy == "Running":
            if state in OFF:
                await self._start(vm, dom, paused=False)
                await self._record(vm, "Started", "Started the domain.", "Start")
            elif state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
                await self.libvirt.call(dom.resume)
                await self._record(vm, "Resumed", "Resumed the domain.", "Resume")
        elif strategy == "Paused":
            if state in OFF:
                await self._start(vm, dom, paused=True)
                await self._record(vm, "StartedPaused", "Started the domain paused.", "Start")
            elif state in RUNNING:
                await self.libvirt.call(dom.suspend)
                await self._record(vm, "Paused", "Paused the domain.", "Pause")
        elif state not in OFF:
            await self._halt(vm, dom, state)

    async def _halt(self, vm: VirtualMachine, dom: libvirt.virDomain, state: int) -> None:
        uid = vm.metadata.uid or ""
        force = (vm.metadata.annotations or {}).get(names.STOP_MODE_ANNOTATION) == "force"
        grace = vm.spec.graceful_shutdown_seconds
        deadline = self._stop_deadline.get(uid)
        if force or grace == 0 or state == libvirt.VIR_DOMAIN_PAUSED:
            await self.libvirt.power_off(dom)
            self._stop_deadline.pop(uid, None)
            await self._record(vm, "PoweredOff", "Powered the domain off.", "Stop")
        elif deadline is None:
            try:
                await self.libvirt.call(dom.shutdown)  # the ACPI power button
            except libvirt.libvirtError as exc:
                log.warning("graceful shutdown refused; powering off", extra={"vm": vm.name, "error": str(exc)})
                await self.libvirt.power_off(dom)
                return
            self._stop_deadline[uid] = time.monotonic() + grace
            self._look_again(key_of(vm), grace)
            await self._record(vm, "Stopping", f"Asked the guest to shut down; power-off after {grace} s.", "Stop")
        elif time.monotonic() >= deadline:
            await self.libvirt.power_off(dom)
            self._stop_deadline.pop(uid, None)
            note = f"The guest did not shut down within {grace} s; powered the domain off."
            await self._record(vm, "PoweredOff", note, "Stop")
        else:
            self._look_again(key_of(vm), deadline - time.monotonic())
