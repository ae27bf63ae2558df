"""Keeps the host's network interfaces as the Host's ``spec.interfaces`` says, and reports them.

The reconciler runs a pass when the Host changes (the reporter's watch), when
netlink says a link, address or route changed (someone ran ``ip link set
down``: it is put back), and every ``network_resync`` seconds. A pass applies
the spec with pyroute2 and writes, by server-side apply as its own field
manager (``vapor-agent-network``), ``status.interfaces``, ``apiInterface`` and
the conditions ``NetworkConfigured`` and ``NetworkRolledBack``: never the
operator's Ready condition or drain.

Rollback: when a pass changes something and the API server (or the
``--network-probe`` address) was reachable before but is not for
``network_rollback_grace`` seconds after, the previous configuration of the
interfaces the pass touched is put back and ``NetworkRolledBack`` says so; that
generation of the spec is not applied again (a new edit is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from kubernetes.aio.client.exceptions import ApiException

from vapor.kube import Kube, KubeError, NotFound
from vapor.model import Host, HostStatus, names
from vapor.model._meta import Condition
from vapor.model.host import InterfaceSpec

from .._config import AgentConfig
from ..host.netlink import EventWatch, Netlink, Outcome

log = logging.getLogger("vapor.agent.network")

ConditionType = names.ConditionType
PROBE_TIMEOUT = 1.0


def probe_target(kube: Kube, override: str | None) -> tuple[str, int] | None:
    """Host and port the agent checks its reach to: ``--network-probe``, else the API server's."""
    text = override or str(kube.api.configuration.host)
    if "//" not in text:
        text = "tcp://" + text
    parts = urlsplit(text)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme in ("https", "tcp") else 80)
    return parts.hostname, port


class NetworkReconciler:
    """Applies the Host's spec.interfaces, puts drift back, reports, and rolls back what cut the node off."""

    def __init__(self, kube: Kube, config: AgentConfig, host: Callable[[], Host | None]) -> None:
        self.kube = kube
        self.config = config
        self.host = host
        self.hosts = kube.resources(Host)
        self.netlink = Netlink(config.netns)
        self.probe = probe_target(kube, config.network_probe)
        self.writes = 0
        self.passes = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: EventWatch | None = None
        self._written: dict[str, Any] | None = None
        self._written_at = 0.0
        self._rolled_back: tuple[int, str] | None = None  # (generation, message) of the spec that was undone
        self._conditions: dict[str, Condition] = {}

    def wake(self) -> None:
        """Ask for a pass soon (safe from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start_events(self) -> None:
        """Listen to netlink in a thread, so drift is seen at once."""
        self._loop = asyncio.get_running_loop()
        self._events = EventWatch(self.config.netns, self.wake)
        self._events.start()

    async def stop(self) -> None:
        """Stop listening and close the netlink socket."""
        if self._events is not None:
            await asyncio.to_thread(self._events.stop)
        self.netlink.close()

    async def run(self) -> None:
        """Pass after pass until cancelled."""
        self.start_events()
        while True:
            try:
                await self.reconcile_once()
            except (TimeoutError, KubeError, ApiException, OSError) as exc:
                log.warning("network pass failed", extra={"error": str(exc)})
                self._written = None
            except Exception:
                log.exception("network pass failed unexpectedly")
                self._written = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.network_resync)
            await asyncio.sleep(0.1)  # let a burst of netlink events settle into one pass
            self._wake.clear()

    async def _reachable(self) -> bool:
        if self.probe is None:
            return True
        host, port = self.probe
        return await asyncio.to_thread(self.netlink.reachable, host, port, PROBE_TIMEOUT)

    async def _api_interface(self) -> str | None:
        if self.probe is None:
            return None
        try:
            address = (await asyncio.to_thread(socket.getaddrinfo, self.probe[0], self.probe[1]))[0][4][0]
        except OSError:
            return None
        return await asyncio.to_thread(self.netlink.route_interface, str(address))

    async def _apply_guarded(self, wanted: list[InterfaceSpec], generation: int) -> Outcome:
        """Apply ``wanted``; when that cuts the node off for the grace period, put the old configuration back."""
        plan = await asyncio.to_thread(self.netlink.apply, wanted, dry_run=True)
        if not plan.actions:
            return plan
        reach_before = await self._reachable()
        before = await asyncio.to_thread(self.netlink.snapshot, sorted(plan.touched))
        outcome = await asyncio.to_thread(self.netlink.apply, wanted)
        log.info(
            "applied network changes",
            extra={"actions": outcome.actions, "problems": [p.message for p in outcome.problems]},
        )
        if not reach_before or await self._reachable():
            return outcome
        deadline = time.monotonic() + self.config.network_rollback_grace
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if await self._reachable():
                return outcome
        target = f"{self.probe[0]}:{self.probe[1]}" if self.probe else "the API server"
        message = (
            f"generation {generation} of spec.interfaces ({'; '.join(outcome.actions)}) cut the node off from "
            f"{target} for {self.config.network_rollback_grace:g} s; the previous configuration was put back"
        )
        restored = await asyncio.to_thread(self.netlink.apply, before)
        log.warning("rolled back a network change", extra={"generation": generation, "restored": restored.actions})
        self._rolled_back = (generation, message)
        return outcome

    def _condition(self, type_: str, status: str, reason: str, message: str, generation: int) -> Condition:
        fresh = Condition.after(
            self._conditions.get(type_),
            type=type_,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            message=message,
            observed_generation=generation,
        )
        self._conditions[type_] = fresh
        return fresh

    async def reconcile_once(self) -> bool:
        """One pass: apply, observe, write the status when it changed; whether it was written."""
        host = self.host()
        if host is None:
            return False
        self.passes += 1
        generation = int(host.metadata.generation or 0)
        wanted = list(host.spec.interfaces or [])
        if host.status and not self._conditions:  # a restarted agent keeps the transition times it wrote
            self._conditions = {c.type: c for c in host.status.conditions or []}
            last = self._conditions.get(ConditionType.NETWORK_CONFIGURED)
            if last and last.reason == "RolledBack" and last.observed_generation == generation:
                self._rolled_back = (generation, last.message)  # do not apply the undone spec again
        conditions = []
        if self._rolled_back is not None and self._rolled_back[0] == generation:
            conditions.append(
                self._condition(
                    ConditionType.NETWORK_CONFIGURED,
                    "False",
                    "RolledBack",
                    self._rolled_back[1],
                    generation,
                )
            )
        else:
            outcome = await self._apply_guarded(wanted, generation)
            if self._rolled_back is not None and self._rolled_back[0] == generation:
                return await self.reconcile_once()  # report the rollback
            if outcome.problems:
                first = outcome.problems[0]
                text = "; ".join(p.message for p in outcome.problems)
                conditions.append(
                    self._condition(ConditionType.NETWORK_CONFIGURED, "False", first.reason, text, generation)
                )
            else:
                managed = ", ".join(s.name for s in wanted) or "none"
                conditions.append(
                    self._condition(
                        ConditionType.NETWORK_CONFIGURED,
                        "True",
                        "Applied",
                        f"interfaces as the spec asks (managed: {managed})",
                        generation,
                    )
                )
        if self._rolled_back is not None:
            rolled_now = self._rolled_back[0] == generation
            conditions.append(
                self._condition(
                    ConditionType.NETWORK_ROLLED_BACK,
                    "True" if rolled_now else "False",
                    "LostAPIServer" if rolled_now else "Applied",
                    self._rolled_back[1] if rolled_now else f"generation {generation} applied without losing the node",
                    generation,
                )
            )
        status = HostStatus(
            interfaces=await asyncio.to_thread(self.netlink.interfaces),
            conditions=conditions,
            api_interface=await self._api_interface() or None,
        )
        return await self._write(status)

    async def _write(self, status: HostStatus) -> bool:
        # What changed, leaving out what moves all the time: counters and transition times.
        shape = status.model_copy(
            update={
                "interfaces": [i.model_copy(update={"statistics": None}) for i in status.interfaces or []],
                "conditions": [c.model_copy(update={"last_transition_time": None}) for c in status.conditions or []],
            }
        ).model_dump(mode="json")
        now = time.monotonic()
        if shape == self._written and now - self._written_at < self.config.inventory_interval:
            return False
        try:
            await self.hosts.apply_status(
                self.config.node_name,
                status,
                field_manager=names.FIELD_MANAGER_AGENT_NETWORK,
                force=True,
            )
        except NotFound:
            return False  # the reporter makes the Host again; the next pass writes
        self.writes += 1
        self._written, self._written_at = shape, now
        log.debug("wrote network status", extra={"interfaces": len(status.interfaces or [])})
        return True
