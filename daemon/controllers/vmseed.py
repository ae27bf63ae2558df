"""A VM's cloud-init seed on this node: its documents, the ISO in the VM's folder, and whether the guest has read it.

The documents come from spec.cloudInit (user-data from the spec or from a
Secret in the VM's namespace, read with the agent's ``get`` on Secrets). The
ISO (``<disks-dir>/<uid>/cidata.iso``, written by :mod:`..host.seediso`) is
rebuilt when the documents' digest differs from the one written beside it;
a running domain keeps reading the ISO it opened at boot.

Which seed a domain boots with is kept in its own metadata (an element of
:data:`SEED_NS` holding the digest): the agent sets it in the persistent
definition whenever the seed changes, and libvirt copies the definition into
the running instance at each start. So the running instance's copy tells
which seed its guest read, across agent restarts, and RestartRequired is
True while that differs from the current one.

Neither the documents nor the Secret's value are ever logged or written to
an Event or the status; errors name the Secret and key only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt  # type: ignore[import-untyped]

from vapor import cloudinit
from vapor.cloudinit import SECRET_NOT_FOUND, CloudInitError, Documents
from vapor.kube import Kube, KubeError, NotFound
from vapor.model import VirtualMachine
from vapor.model.names import ConditionType

from ..host.libvirt import Libvirt
from .vmstatus import Other

log = logging.getLogger("vapor.agent.cloudinit")

SEED_NS = "https://vapor.io/xmlns/seed/v1alpha1"
SEED_FILE = "cidata.iso"
DIGEST_FILE = "cidata.digest"
CHANGED = "CloudInitChanged"
CURRENT = "CloudInitCurrent"


def seed_path(storage_dir: Path, uid: str) -> Path:
    """Where a VM's seed ISO lives: in its own folder, beside the disks the agent made for it."""
    return storage_dir / uid / SEED_FILE


@dataclass(frozen=True)
class Seed:
    """A VM's seed as written on this node."""

    path: Path
    digest: str
    rewritten: bool = False  # an older seed was replaced just now


class Seeds:
    """Makes the seeds of this node's VMs and tells whether their guests booted with the current one."""

    def __init__(self, kube: Kube, libvirt_conn: Libvirt, storage_dir: Path) -> None:
        self.kube = kube
        self.libvirt = libvirt_conn
        self.storage_dir = storage_dir

    # -- the documents and the ISO ---------------------------------------------------------
    async def _secret_user_data(self, vm: VirtualMachine) -> str:
        spec = vm.spec.cloud_init
        assert spec is not None and spec.user_data_secret_ref is not None
        ref, namespace = spec.user_data_secret_ref, vm.metadata.namespace or ""
        try:
            # By path, not through the generated CoreV1Api: that group alone costs the agent about 24 MiB.
            secret = await self.kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{ref.name}")
        except NotFound:
            raise _waits(cloudinit.secret_missing(ref.name, namespace)) from None
        except KubeError as exc:
            message = f"Secret {ref.name!r} in namespace {namespace!r} could not be read ({exc.status} {exc.reason})"
            raise _waits(CloudInitError(SECRET_NOT_FOUND, message, waiting=True)) from None
        try:
            return cloudinit.secret_user_data(secret.get("data"), ref.name, ref.key, namespace)
        except CloudInitError as exc:
            raise _waits(exc) from None

    async def documents(self, vm: VirtualMachine) -> Documents | None:
        """The seed's documents for ``vm`` (None without cloudInit); raises CloudInitError."""
        spec = vm.spec.cloud_init
        if spec is None:
            return None
        given = await self._secret_user_data(vm) if spec.user_data_secret_ref is not None else spec.user_data
        return cloudinit.documents(vm, given)

    async def ensure(self, vm: VirtualMachine) -> Seed | None:
        """The VM's seed, (re)written when its documents changed; None without cloudInit."""
        docs = await self.documents(vm)
        if docs is None:
            return None
        path = seed_path(self.storage_dir, vm.metadata.uid or "")
        digest = docs.digest()
        before = await asyncio.to_thread(_written_digest, path)
        if before == digest:
            return Seed(path, digest)
        await asyncio.to_thread(_write, path, docs, digest)
        log.info("wrote the cloud-init seed", extra={"vm": f"{vm.metadata.namespace}/{vm.name}", "seed": digest})
        return Seed(path, digest, rewritten=before is not None)

    async def remove(self, vm: VirtualMachine) -> None:
        """Remove the seed of a VM that no longer has cloudInit (its domain no longer names it)."""
        path = seed_path(self.storage_dir, vm.metadata.uid or "")
        for stale in (path, path.with_name(DIGEST_FILE)):
            if stale.exists():
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(stale.unlink)

    # -- which seed the domain boots with -----------------------------------------------
    async def _digest_in(self, dom: libvirt.virDomain, flags: int) -> str | None:
        try:
            text = await self.libvirt.call(dom.metadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, SEED_NS, flags)
        except libvirt.libvirtError:
            return None  # no such element (or, for the running instance, none runs)
        try:
            return ET.fromstring(text).get("digest") or None
        except ET.ParseError:
            return None

    async def record(self, dom: libvirt.virDomain, seed: Seed | None) -> None:
        """Write the seed's digest into the domain's persistent definition (read at its next start)."""
        config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        wanted = seed.digest if seed is not None else None
        if await self._digest_in(dom, config) == wanted:
            return
        element = ET.tostring(ET.Element("seed", {"digest": wanted}), encoding="unicode") if wanted else None
        await self.libvirt.call(dom.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, "vseed", SEED_NS, config)

    async def restart_condition(self, vm: VirtualMachine, dom: libvirt.virDomain, active: bool) -> Other | None:
        """RestartRequired: True while the running guest booted with another seed than the current one.

        None (no condition) for a VM that has no cloudInit and whose running instance had none either.
        """
        current = await self._digest_in(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        booted = await self._digest_in(dom, libvirt.VIR_DOMAIN_AFFECT_LIVE) if active else None
        if vm.spec.cloud_init is None and booted is None:
            return None
        kind = ConditionType.RESTART_REQUIRED
        if active and booted != current:
            message = "cloud-init changed since the guest booted; it reads the new seed at its next boot"
            return kind, "True", CHANGED, message
        if active:
            return kind, "False", CURRENT, "The guest booted with the current cloud-init seed."
        return kind, "False", CURRENT, "The guest reads the current cloud-init seed when it boots."


def _waits(exc: CloudInitError) -> CloudInitError:
    """``exc`` saying that the VM waits, when it does."""
    if exc.waiting:
        exc.message += "; the VM waits for it"
    return exc


def _written_digest(path: Path) -> str | None:
    try:
        return path.with_name(DIGEST_FILE).read_text().strip() if path.exists() else None
    except OSError:
        return None


def _write(path: Path, docs: Documents, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)  # QEMU runs as its own user: it must be able to reach the seed
    from ..host import seediso  # pycdlib, only on a host whose VMs use cloud-init

    # Root's only until libvirt hands it to QEMU's user at the start: user-data may hold secrets.
    seediso.write_seed_iso(path, docs.meta_data, docs.user_data, docs.network_config, mode=0o600)
    marker = path.with_name(DIGEST_FILE)
    tmp = marker.with_name(f".{DIGEST_FILE}.partial")
    tmp.write_text(digest)
    os.replace(tmp, marker)
