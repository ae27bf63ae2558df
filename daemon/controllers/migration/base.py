"""What both sides of a migration share: Migrations of this node by one label, on the shared controller loop."""

from __future__ import annotations

import asyncio
import logging

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube
from vapor.kube._informer import Key
from vapor.model import Migration

from ..._config import AgentConfig
from ...host.domain import domain_name
from ...host.libvirt import Libvirt
from ..loop import NodeController

log = logging.getLogger("vapor.agent.migration")

WORKERS = 4  # migrations of one side handled at once (a source's job runs in its own task)


class MigrationSide(NodeController[Migration]):
    """The Migrations labelled ``label=<node>``: each change is one ``handle(m)`` on the shared loop."""

    role = ""

    def __init__(self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt, label: str) -> None:
        super().__init__(kube, Migration, config, label_selector=f"{label}={config.node_name}")
        self.libvirt = libvirt_conn
        self.migrations = kube.resources(Migration)

    async def start(self) -> None:
        """Watch, look at every Migration once, and handle changes from then on."""
        await self.watch()
        self.run(self.reconcile, workers=WORKERS, name=f"migration-{self.role}")

    async def reconcile(self, key: Key) -> None:
        """Do this side's step of one Migration (a failure is logged; the next change tries again)."""
        m = self.informer.get(key[1], key[0])
        if m is None:
            return
        try:
            await self.handle(m)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("migration step failed", extra={"migration": f"{key[0]}/{key[1]}", "role": self.role})

    async def handle(self, m: Migration) -> None:
        """Do this side's step for the Migration as it is now."""
        raise NotImplementedError

    async def domain(self, m: Migration) -> libvirt.virDomain | None:
        """The domain of the Migration's VM on this host, if there is one."""
        return await self.libvirt.lookup(domain_name(m.metadata.namespace or "", m.spec.vm_name))


class NotReady(Exception):
    """A step that cannot be done: ``reason`` goes into the condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
