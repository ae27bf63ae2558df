"""The agent's libvirt connection, with lifecycle events delivered to asyncio.

libvirt calls block, so callers go through :meth:`Libvirt.call` (a worker
thread). Events come from libvirt's default event loop implementation, run by
one daemon thread per process; each lifecycle event is handed to the asyncio
loop with ``call_soon_threadsafe``, so handlers run on the loop like any
other callback and never inside libvirt's thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped]

from .._metrics import LIBVIRT_CALL_ERRORS, LIBVIRT_CALL_SECONDS

log = logging.getLogger("vapor.agent.libvirt")

T = TypeVar("T")
LifecycleHandler = Callable[[str, str, int, int], None]  # domain name, domain UUID, event, detail
AgentHandler = Callable[[str, bool], None]  # domain name, whether its guest agent is connected now

_event_thread: threading.Thread | None = None
_event_lock = threading.Lock()

# Undefining a domain takes along everything libvirt keeps for it (a managed save image, snapshot and
# checkpoint metadata, the NVRAM file): without them undefine refuses a domain that has any of those.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)

# Names of libvirt's lifecycle events (VIR_DOMAIN_EVENT_*), for logs.
EVENT_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


def _ignore_error(_ctx: object, _err: object) -> None:
    """Drop libvirt's own error printing: every failed call reaches the agent as an exception."""


def start_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread (once per process)."""
    global _event_thread
    with _event_lock:
        if _event_thread is not None:
            return
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except libvirt.libvirtError:
                    log.exception("libvirt event loop iteration failed")

        _event_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_thread.start()


class Libvirt:
    """One connection to libvirtd, shared by the agent's parts."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn: libvirt.virConnect | None = None
        self.closed = asyncio.Event()  # set when libvirtd goes away
        self._handlers: list[LifecycleHandler] = []
        self._callback_id: int | None = None
        self._agent_handlers: list[AgentHandler] = []
        self._agent_callback_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def alive(self) -> bool:
        """Whether the connection is open and libvirtd has not gone away."""
        return self.conn is not None and not self.closed.is_set()

    async def open(self) -> None:
        """Connect, and start delivering lifecycle events."""
        start_event_loop()
        self._loop = asyncio.get_running_loop()
        self.closed.clear()
        conn = await self.call(libvirt.open, self.uri)
        conn.setKeepAlive(5, 3)  # notice a dead libvirtd within about 15 s
        conn.registerCloseCallback(self._on_close, None)
        self._callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )
        self._agent_callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent_lifecycle, None
        )
        self.conn = conn
        log.info("connected to libvirt", extra={"uri": self.uri})

    async def close(self) -> None:
        """Stop the events and close the connection."""
        conn, self.conn = self.conn, None
        if conn is None:
            return

        callback_ids = [i for i in (self._callback_id, self._agent_callback_id) if i is not None]
        self._callback_id = self._agent_callback_id = None

        def close() -> None:
            # Each step on its own: after libvirtd went away the first ones fail, and the last must still run.
            steps: list[Callable[[], object]] = [conn.unregisterCloseCallback, conn.close]
            steps[:0] = [functools.partial(conn.domainEventDeregisterAny, i) for i in callback_ids]
            for step in steps:
                try:
                    step()
                except libvirt.libvirtError as exc:
                    log.debug("closing libvirt: %s", exc)

        await asyncio.to_thread(close)

    async def open_retrying(self, max_delay: float = 30.0) -> None:
        """Connect, retrying with a growing delay until libvirtd answers."""
        delay = 1.0
        while True:
            try:
                await self.open()
                return
            except libvirt.libvirtError as exc:
                log.warning("libvirt not reachable; retrying", extra={"uri": self.uri, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    async def stay_connected(self, on_reconnect: Callable[[], None]) -> None:
        """Whenever libvirtd drops the connection, connect again and call ``on_reconnect``."""
        while True:
            await self.closed.wait()
            log.warning("lost the libvirt connection; reconnecting", extra={"uri": self.uri})
            await self.close()
            await self.open_retrying()
            on_reconnect()

    def on_lifecycle(self, handler: LifecycleHandler) -> None:
        """Call ``handler(name, uuid, event, detail)`` on the asyncio loop for every lifecycle event."""
        self._handlers.append(handler)

    def on_agent_lifecycle(self, handler: AgentHandler) -> None:
        """Call ``handler(name, connected)`` on the asyncio loop when a domain's guest agent connects or goes."""
        self._agent_handlers.append(handler)

    def connection(self) -> libvirt.virConnect:
        """The open connection (raises when there is none)."""
        if self.conn is None:
            raise RuntimeError("libvirt is not connected")
        return self.conn

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking libvirt call in a worker thread (timed by call name in the agent's metrics)."""
        name = getattr(func, "__name__", "call")
        with LIBVIRT_CALL_SECONDS.labels(name).time():
            try:
                return await asyncio.to_thread(func, *args)
            except Exception:
                LIBVIRT_CALL_ERRORS.labels(name).inc()
                raise

    # -- domains ------------------------------------------------------------------
    async def lookup(self, name: str) -> libvirt.virDomain | None:
        """The domain named ``name``, or None when there is none."""
        try:
            return await self.call(self.connection().lookupByName, name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    async def power_off(self, dom: libvirt.virDomain) -> None:
        """Destroy (power off) ``dom``; one that is off already is fine."""
        try:
            await self.call(dom.destroy)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                raise

    async def undefine(self, dom: libvirt.virDomain) -> None:
        """Remove ``dom``'s definition with everything libvirt keeps for it; one that is gone already is fine."""
        try:
            await self.call(dom.undefineFlags, UNDEFINE_FLAGS)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise

    async def remove(self, dom: libvirt.virDomain) -> None:
        """Power ``dom`` off when it runs, then undefine it."""
        if await self.call(dom.isActive):
            await self.power_off(dom)
        await self.undefine(dom)

    # -- callbacks from libvirt's event thread ------------------------------------
    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        name, uuid = dom.name(), dom.UUIDString()  # served from the event's own data, no round trip
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, name, uuid, event, detail)

    def _dispatch(self, name: str, uuid: str, event: int, detail: int) -> None:
        log.debug("domain event", extra={"domain": name, "event": EVENT_NAMES.get(event, str(event))})
        for handler in self._handlers:
            try:
                handler(name, uuid, event, detail)
            except Exception:
                log.exception("lifecycle handler failed")

    def _on_agent_lifecycle(self, _conn: Any, dom: Any, state: int, _reason: int, _opaque: Any) -> None:
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch_agent, dom.name(), connected)

    def _dispatch_agent(self, name: str, connected: bool) -> None:
        log.debug("guest agent event", extra={"domain": name, "connected": connected})
        for handler in self._agent_handlers:
            try:
                handler(name, connected)
            except Exception:
                log.exception("guest agent handler failed")

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.closed.set)
