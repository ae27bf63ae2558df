"""The agent's side of a Migration: the target prepares, the source runs libvirt's job.

Two controllers on the agent's shared loop (:class:`..loop.NodeController`),
each with its own server-side selector: Migrations labelled
``vapor.io/target-host=<node>`` (this node receives a VM, :mod:`.target`) and
``vapor.io/source-host=<node>`` (this node sends one, :mod:`.source`). The
operator drives the phases; these only do what the protocol gives the agents
(docs: daemon/README.md, "Migrations"):

- target, phase PreparingTarget: the libvirt networks the VM uses exist and
  are active, disk images exist for copyStorage all/incremental; condition
  TargetReady True or False. After a Failed or Cancelled migration it removes
  the images it made and a domain that half arrived.
- source, phase Running: ``migrateToURI3`` peer-to-peer (over qemu+tls, QEMU's
  stream too, unless the agent was told tcp) to the target Host's
  ``status.hypervisor.migrationAddress`` in a worker thread, progress from
  ``jobStats()`` about every second, completion and progress timeouts and
  cancellation by ``abortJob()``, then endTime, downtimeMs and condition
  Completed.

Every write is a server-side apply with the agent's field manager; the source
repeats every field it owns in each apply (and keeps TargetReady as it is), so
fields the two sides own on one object never remove each other.
"""

from __future__ import annotations

import logging

from vapor.kube import Kube

from ..._config import AgentConfig
from ...host.libvirt import Libvirt
from ..images import ImageController
from .source import MigrationSource
from .target import MigrationTarget

log = logging.getLogger("vapor.agent.migration")


class MigrationController:
    """The node's part of every Migration that leaves from it or arrives at it."""

    def __init__(
        self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt, *, images: ImageController | None = None
    ) -> None:
        self.config = config
        self.source = MigrationSource(kube, config, libvirt_conn)
        self.target = MigrationTarget(kube, config, libvirt_conn, images=images)

    async def start(self) -> None:
        """Watch both selectors and look at every Migration once (a restart resumes or ends what ran)."""
        await self.source.start()
        await self.target.start()
        log.info("watching migrations", extra={"node": self.config.node_name})

    async def stop(self) -> None:
        """Stop watching; libvirt's jobs go on (a restarted agent picks them up)."""
        await self.source.stop()
        await self.target.stop()
