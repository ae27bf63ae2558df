"""The target host's part of a Migration: make ready what the VM needs here, and clean up after a failure."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import libvirt  # type: ignore[import-untyped]

from vapor.cloudinit import CloudInitError
from vapor.kube import Kube, NotFound
from vapor.model import Migration, MigrationStatus, VirtualMachine, names

from ..._config import AgentConfig
from ...host.diskpaths import DiskPathRefused, allowed_sources
from ...host.images import DiskMissing, DiskTooSmall, ImageFailed, ensure_disks
from ...host.libvirt import Libvirt
from ..images import ImageController
from ..vmimages import ImageWait, images_for
from ..vmseed import DIGEST_FILE, Seeds
from .base import MigrationSide, NotReady

log = logging.getLogger("vapor.agent.migration")


class MigrationTarget(MigrationSide):
    """Migrations arriving at this node: TargetReady, and no leftovers after a Failed or Cancelled one."""

    role = "target"

    def __init__(
        self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt, *, images: ImageController | None = None
    ) -> None:
        super().__init__(kube, config, libvirt_conn, names.MIGRATION_TARGET_LABEL)
        self.images = images  # this host's cache: an image disk's overlay is made on its copy here
        self._records = config.state_dir / "migrations"  # the images each migration made here, by its uid
        self._seeds = Seeds(kube, libvirt_conn, config.disks_dir)

    async def handle(self, m: Migration) -> None:
        """Prepare once in PreparingTarget; clean up after Failed or Cancelled; forget after Succeeded."""
        if m.phase == "PreparingTarget" and m.condition(names.ConditionType.TARGET_READY) is None:
            await self._prepare(m)
        elif m.phase in ("Failed", "Cancelled"):
            await self._clean(m)
        elif m.phase == "Succeeded":
            self._record_path(m).unlink(missing_ok=True)

    def _record_path(self, m: Migration) -> Path:
        return self._records / f"{m.metadata.uid}.json"

    async def _vm(self, m: Migration) -> VirtualMachine | None:
        try:
            return await self.kube.resources(VirtualMachine).get(m.spec.vm_name, m.metadata.namespace)
        except NotFound:
            return None

    async def _prepare(self, m: Migration) -> None:
        who = f"{m.metadata.namespace}/{m.name}"
        ok, reason, message = True, "Prepared", "networks and storage ready"
        made: list[Path] = []
        try:
            vm = await self._vm(m)
            if vm is None:
                raise NotReady("VMNotFound", f"VirtualMachine {m.spec.vm_name} does not exist")
            await self._prepare_networks(vm)
            made = await self._prepare_seed(vm)  # recorded before the disks, which may fail
            disks = await self._prepare_disks(m, vm)
            made += disks
            if disks:
                message = f"networks ready; created {len(disks)} disk image(s) for the copy"
        except NotReady as exc:
            ok, reason, message = False, exc.reason, exc.message
        except libvirt.libvirtError as exc:
            ok, reason, message = False, "LibvirtError", str(exc)
        if made:
            self._records.mkdir(parents=True, exist_ok=True)
            self._record_path(m).write_text(json.dumps({"created": [str(path) for path in made]}))
        log.info("target prepared" if ok else "target not ready", extra={"migration": who, "reason": reason})
        ready = m.condition_after(
            names.ConditionType.TARGET_READY, "True" if ok else "False", reason, message, observe=False
        )
        await self.migrations.apply_status(
            m.name,
            MigrationStatus(conditions=[ready]),
            namespace=m.metadata.namespace,
            field_manager=names.FIELD_MANAGER_AGENT,
        )

    async def _prepare_networks(self, vm: VirtualMachine) -> None:
        conn = self.libvirt.connection()
        for net in vm.spec.networks or []:
            if net.type != "network":
                continue
            source = net.source or "default"
            try:
                network = await self.libvirt.call(conn.networkLookupByName, source)
            except libvirt.libvirtError as exc:
                raise NotReady("NetworkMissing", f"libvirt network {source} does not exist on this host") from exc
            if not await self.libvirt.call(network.isActive):
                await self.libvirt.call(network.create)
                log.info("started libvirt network for an arriving VM", extra={"network": source})

    async def _prepare_seed(self, vm: VirtualMachine) -> list[Path]:
        """The VM's cloud-init seed at the same path: a read-only CD-ROM is not copied with the storage."""
        try:
            seed = await self._seeds.ensure(vm)
        except CloudInitError as exc:
            raise NotReady(exc.reason, exc.message) from None
        return [seed.path, seed.path.with_name(DIGEST_FILE)] if seed is not None else []

    async def _prepare_disks(self, m: Migration, vm: VirtualMachine) -> list[Path]:
        """Empty images of the same size and format at the same paths, for copyStorage all/incremental.

        First of all, every path disk must be one this node allows (see diskpaths). An image
        disk gets its overlay on this host's copy of the Image (the operator has it fetched here
        first: its ImageReady pre-flight), which libvirt's copy fills.
        """
        try:
            allowed_sources(self.config, vm, missing_ok=True)
        except DiskPathRefused as exc:
            raise NotReady(exc.reason, exc.message) from None
        if m.spec.copy_storage == "none":
            return []
        try:
            images = await images_for(vm, self.images)
        except ImageWait as wait:
            raise NotReady(wait.reason if wait.failed else "ImageNotReady", wait.message) from None
        try:
            return await ensure_disks(vm, self.config.disks_dir, images)
        except DiskTooSmall as exc:
            raise NotReady("DiskTooSmall", str(exc)) from None
        except DiskMissing as exc:
            raise NotReady("StorageMissing", f"{exc}; its size is not in the spec") from None
        except ImageFailed as exc:
            raise NotReady("StorageFailed", str(exc)) from None

    async def _clean(self, m: Migration) -> None:
        """After a failed or cancelled migration: nothing of it stays here."""
        vm = await self._vm(m)
        placed_here = vm is not None and (vm.metadata.labels or {}).get(names.HOST_LABEL) == self.config.node_name
        if not placed_here:
            dom = await self.domain(m)
            if dom is not None:
                try:
                    await self.libvirt.remove(dom)
                    log.info("removed a half-arrived domain", extra={"migration": f"{m.metadata.namespace}/{m.name}"})
                except libvirt.libvirtError as exc:
                    log.warning("could not remove a half-arrived domain", extra={"error": str(exc)})
        record = self._record_path(m)
        if record.exists():
            if not placed_here:
                for path in json.loads(record.read_text()).get("created", []):
                    Path(path).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        Path(path).parent.rmdir()
            record.unlink(missing_ok=True)
