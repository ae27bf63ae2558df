"""The agent of one node: the Host reporter, the heartbeat and the VM controller, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

import aiohttp
from kubernetes.aio.client.exceptions import ApiException

from vapor.agentapi.errors import CONFLICT
from vapor.kube import Kube, KubeError
from vapor.model import Host

from ._config import AgentConfig
from ._metrics import MetricsServer
from .controllers.heartbeat import Heartbeat
from .controllers.host import HostReporter
from .controllers.images import ImageController
from .controllers.migration import MigrationController
from .controllers.mounts import MountController
from .controllers.network import NetworkReconciler
from .controllers.restores import RestoreController
from .controllers.snapshots import SnapshotController
from .controllers.vms import VMController
from .host import format as _format
from .host import hostid as _hostid
from .host.blockevents import BlockDeviceEvents
from .host.imagecache import ImageCache
from .host.libvirt import Libvirt

if TYPE_CHECKING:
    from .nodeapi.server import NodeAPI

log = logging.getLogger("vapor.agent")


class Agent:
    """Everything one node's agent runs, as one unit with ``start()`` and ``stop()``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kube: Kube | None = None
        self.libvirt = Libvirt(config.libvirt_uri)
        self.host_id = ""
        self.reporter: HostReporter | None = None
        self.heartbeat: Heartbeat | None = None
        self.vms: VMController | None = None
        self.migrations: MigrationController | None = None
        self.nodeapi: NodeAPI | None = None
        self.network: NetworkReconciler | None = None
        self.mounts: MountController | None = None
        self.snapshots: SnapshotController | None = None
        self.restores: RestoreController | None = None
        self.cache = ImageCache(config.images_cache_dir, reserve=config.image_reserve, fetches=config.image_fetches)
        self.images: ImageController | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    @staticmethod
    async def _register(reporter: HostReporter) -> Host:
        """Make sure the Host exists, retrying while the API server is not there yet (as the kubelet does)."""
        delay = 1.0
        while True:
            try:
                return await reporter.ensure_host()
            except (KubeError, ApiException, OSError, aiohttp.ClientError) as exc:
                log.warning("could not register the host; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> None:
        """Connect, make sure the Host exists, start the heartbeat, the inventory and the VMs."""
        config = self.config
        self.host_id = _hostid.load_or_create(config.state_dir, config.node_name)
        config.disks_dir.mkdir(parents=True, exist_ok=True)
        config.disks_dir.chmod(0o711)  # QEMU (its own user) walks through it to the images, no listing
        self.kube = await Kube.connect(config.kubeconfig)
        await self.libvirt.open_retrying()
        self.reporter = reporter = HostReporter(self.kube, config, self.host_id, self.libvirt)
        await self._register(reporter)
        self.heartbeat = Heartbeat(
            self.kube,
            config.node_name,
            config.lease_namespace,
            duration_seconds=config.lease_duration_seconds,
            renew_seconds=config.lease_renew_seconds,
        )
        self.heartbeat.owner = lambda: reporter.host  # follows the Host if it is deleted and made again
        await reporter.watch()
        self.images = images = ImageController(
            self.kube, config, self.cache, lambda: reporter.host, lambda: self._vm_disks()
        )
        await images.start()
        if reporter.informer is not None:  # a label change may select Images for prefetch
            reporter.informer.on_change(lambda _event: images.resync_all())
        if config.api_bind:  # after the Host exists: the server publishes its endpoint there
            from .nodeapi.server import NodeAPI  # aiohttp's server, TLS and the Docker/CRI views: not for every agent

            self.nodeapi = NodeAPI(config, self.kube, host=lambda: reporter.host, images=images, libvirt=self.libvirt)
            await self.nodeapi.start()
        self._tasks = [
            # Listening before the first inventory: a disk attached after it is an event, not a wait for a scan.
            asyncio.create_task(BlockDeviceEvents(self._block_devices_changed).run(), name="uevents"),
            asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
            asyncio.create_task(reporter.run(), name="inventory"),
        ]
        self.network = NetworkReconciler(self.kube, config, lambda: reporter.host)
        if reporter.informer is not None:  # a spec edit starts a network pass at once
            reporter.informer.on_change(lambda _event: self.network.wake() if self.network else None)
        self._tasks.append(asyncio.create_task(self.network.run(), name="network"))
        if config.migration_csr and config.migration_transport == "tls" and config.migration_address:
            from .host.migrationcsr import MigrationCertificate  # cryptography: for TLS migrations only

            certificate = MigrationCertificate(
                self.kube,
                config.node_name,
                config.migration_address,
                config.migration_pki,
                lambda: reporter.host,
                config.host_root,
            )
            self._tasks.append(asyncio.create_task(certificate.run(), name="migration-certificate"))
        self.vms = VMController(self.kube, config, self.libvirt, images=images)
        await self.vms.start()
        self.snapshots = SnapshotController(self.kube, config, self.libvirt, self.vms)
        await self.snapshots.start()
        self.restores = RestoreController(self.kube, config, self.libvirt, self.snapshots)
        await self.restores.start()
        self.migrations = MigrationController(self.kube, config, self.libvirt, images=images)
        await self.migrations.start()
        self.mounts = MountController(self.kube, config, lambda: reporter.host, self._vm_disks, reporter.refresh)
        await self.mounts.start()
        # After libvirtd restarts, look at every VM again: events may have been missed meanwhile.
        self._tasks.append(asyncio.create_task(self.libvirt.stay_connected(self.vms.resync_all), name="libvirt"))
        self.started = True
        log.info("agent started", extra={"node": config.node_name, "host_id": self.host_id})

    def _block_devices_changed(self) -> None:
        """A disk or partition came, went or changed: list it now, and try the Mounts that failed again."""
        if self.reporter is not None:
            self.reporter.refresh()
        if self.mounts is not None:
            self.mounts.retry_failed()

    def _vm_disks(self) -> set[str]:
        """Disk sources of every libvirt domain (the format guard refuses them); Refused while libvirt is away."""
        try:
            return _format.libvirt_disk_sources(self.libvirt.connection())
        except Exception as exc:  # libvirt raises its own errors and more
            log.warning("cannot list the domains' disks", extra={"error": str(exc)})
            raise _format.Refused(CONFLICT, f"cannot tell which devices VMs use (libvirt: {exc})") from exc

    def not_ready(self) -> str | None:
        """Why the agent is not ready (for /readyz), or None when it is."""
        if not self.started:
            return "starting: registering the host and connecting to libvirt"
        if not self.libvirt.alive():
            return "the libvirt connection is lost; reconnecting"
        return None

    def inventory_writes(self) -> int:
        """Host status writes of the inventory so far."""
        return self.reporter.writes if self.reporter is not None else 0

    async def stop(self) -> None:
        """Stop every task and close the connections; domains keep running."""
        self.started = False
        if self.nodeapi is not None:
            await self.nodeapi.stop()
        if self.mounts is not None:
            await self.mounts.stop()
        if self.migrations is not None:
            await self.migrations.stop()
        for controller in (self.restores, self.snapshots):
            if controller is not None:
                await controller.stop()
        if self.vms is not None:
            await self.vms.stop()
        if self.images is not None:
            await self.images.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.network is not None:
            await self.network.stop()
        if self.reporter is not None:
            await self.reporter.stop()
        await self.libvirt.close()
        if self.heartbeat is not None:  # last: the Lease's silence then starts at the exit
            await self.heartbeat.renew_at_exit()
        if self.kube is not None:
            await self.kube.close()
        log.info("agent stopped", extra={"node": self.config.node_name})


def _forget_signal_wakeup() -> None:
    """In a forked child: signals must not reach the parent's event loop.

    pyroute2 forks a short-lived child for each socket it opens in another network
    namespace and SIGTERMs it when done; a child still holding asyncio's signal wakeup
    fd would pass that SIGTERM on, and this agent would stop.
    """
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


async def run(config: AgentConfig) -> int:
    """Run the agent until SIGTERM or SIGINT; exit code 0, or 1 when it could not start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    os.register_at_fork(after_in_child=_forget_signal_wakeup)
    agent = Agent(config)
    metrics = None
    if config.metrics_bind:
        metrics = MetricsServer(config.metrics_bind, agent.not_ready, agent.inventory_writes)
        await metrics.start()
    starting = asyncio.create_task(agent.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not starting.done():  # asked to stop while still starting
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    elif starting.exception() is not None:
        log.error("agent could not start", exc_info=starting.exception())
        code = 1
    else:
        await stopping
    stopping.cancel()
    await agent.stop()
    if metrics is not None:
        await metrics.stop()
    return code
