"""What a running gateway holds: the Kubernetes connection, watch caches, token machinery, encoded bodies.

Reads are answered from the Host, VirtualMachine, Migration and Image watch caches; the list
bodies are encoded once per cache generation and then served as bytes
(:mod:`._bodies`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from quart import current_app

from vapor.kube import Informer, Kube
from vapor.loginguard import LoginGuard
from vapor.model import Host, Image, Migration, VirtualMachine

from ._bodies import ListBody
from ._impersonation import UserConnections
from ._refresh import RefreshStore
from ._tokens import TokenSigner, load_signing_key
from ._views import host_view, image_view, vm_view
from ._vmfeed import VmFeed
from ._vmpages import VmPages

log = logging.getLogger("vapor.gateway")


def names(setting: object) -> list[str]:
    """A setting's names: comma separated ("sudo,wheel"), or a list (VAPOR_ADMIN_GROUPS='["sudo"]'); blanks dropped."""
    items = setting.split(",") if isinstance(setting, str) else list(setting or [])  # type: ignore[call-overload]
    return [str(item).strip() for item in items if str(item).strip()]


class Gateway:
    """The state of one gateway process, made in before_serving and closed in after_serving."""

    def __init__(self, kube: Kube, config: dict[str, Any]) -> None:
        self.kube = kube
        self.config = config
        # No managedFields in the caches (no view shows who wrote which field): half of each object.
        self.hosts: Informer[Host] = Informer(kube, Host, managed_fields=False)
        self.vms: Informer[VirtualMachine] = Informer(kube, VirtualMachine, managed_fields=False)
        self.migrations: Informer[Migration] = Informer(kube, Migration, managed_fields=False)
        self.images: Informer[Image] = Informer(kube, Image, managed_fields=False)
        self.host_bodies = ListBody(self.hosts, host_view, "hosts")
        self.vm_bodies = ListBody(self.vms, vm_view, "vms")
        self.image_bodies = ListBody(self.images, image_view, "images")
        self.vm_feed = VmFeed(self.vms, self.vm_bodies)  # /ws/vms: the VM watch's changes, for every socket
        self.vm_pages = VmPages(self.vms)  # GET /vms?limit=&continue=&host=&phase=: sorted keys per filter
        self.signer: TokenSigner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.refresh = RefreshStore(
            kube,
            config["SECRET_NAMESPACE"],
            int(config["REFRESH_TOKEN_LIFETIME"]),
            int(config["REFRESH_FAMILY_LIFETIME"]),
        )
        self.admin_groups = frozenset(names(config["ADMIN_GROUPS"]))
        # The Kubernetes endpoints act as the logged-in user (see _impersonation).
        self.users = UserConnections(kube, str(config["IMPERSONATION_PREFIX"]))
        # Password checks on this machine (no AUTH_HOSTS): per-account backoff, see vapor.loginguard.
        self.login_guard = LoginGuard(
            fail_delay=float(config["LOGIN_FAIL_DELAY"]), backoff_max=float(config["LOGIN_BACKOFF_MAX"])
        )
        # Besides the admins, members of these groups may open /ws/terminal (VAPOR_TERMINAL_GROUPS).
        self.terminal_groups = frozenset(names(config.get("TERMINAL_GROUPS")))
        # Login hosts, in the order they are asked (VAPOR_AUTH_HOSTS); none: PAM on this machine.
        self.auth_hosts = tuple(names(config.get("AUTH_HOSTS")))

    @classmethod
    async def start(cls, config: dict[str, Any]) -> Gateway:
        """Connect, read (or make) the signing key, and fill the caches."""
        kube = await Kube.connect(config.get("KUBECONFIG") or None)
        gateway = cls(kube, config)
        try:
            key = await load_signing_key(kube, config["SECRET_NAMESPACE"], config["SIGNING_KEY_SECRET"])
            gateway.signer = TokenSigner(key, int(config["TOKEN_LIFETIME"]))
            await gateway.hosts.start()
            await gateway.vms.start()
            await gateway.migrations.start()
            await gateway.images.start()
            gateway._sweeper = asyncio.create_task(gateway._sweep(float(config["REFRESH_SWEEP_INTERVAL"])))
        except BaseException:
            await gateway.close()
            raise
        log.info("gateway ready: %d hosts, %d VMs in the caches", len(gateway.hosts.items()), len(gateway.vms.items()))
        return gateway

    async def _sweep(self, interval: float) -> None:
        """Remove expired refresh-token families now and then (every replica may; deletes are idempotent)."""
        while True:
            try:
                removed = await self.refresh.sweep()
                if removed:
                    log.info("removed %d expired refresh-token families", removed)
            except Exception as exc:  # a failed sweep is retried at the next interval
                log.warning("could not sweep expired refresh tokens: %s", exc)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop the caches and close the connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.hosts.stop()
        await self.vms.stop()
        await self.migrations.stop()
        await self.images.stop()
        await self.users.close()
        await self.kube.close()


def gateway() -> Gateway:
    """The gateway of the app serving this request."""
    state: Gateway = current_app.extensions["vapor"]
    return state
