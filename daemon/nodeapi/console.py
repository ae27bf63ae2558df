"""The agent's consoles (node-local API): a VM's serial console and VNC display as WebSockets, one session each.

``/ws/vms/{namespace}/{name}/console`` and ``/ws/vms/{namespace}/{name}/vnc``,
query ``uid`` (the VM's uid: a domain of an older VM of the same name is not
it) and ``user`` (who the gateway authenticated, for messages and logs).
The first message is ``{type: 'subscribe', payload: {force: bool, cols,
rows}}`` (cols and rows are checked and otherwise unused: a serial port has
no window size). The agent answers ``{type: 'ready', replaced: {user, since}
| null}`` once the console or display is open, then relays: binary frames
both ways are the raw bytes (the serial console's characters, or VNC's RFB
stream); text frames from the gateway are JSON control messages
(``resize`` is ignored), and the agent sends none after ``ready``.

One session per VM and kind on this agent. While one is open, another
subscribe is refused with CONFLICT (``... open by <user> since <time>;
subscribe with force to take over``) and closed with 4409. With ``force``
the open session is told ``{type: 'error', error: {code: 'CONFLICT',
message: 'taken over by <user>'}}`` and closed with 4409, then the new one
opens (for the serial console with libvirt's force flag, which also ends a
``virsh console`` on the host). Other refusals: NOT_FOUND (no domain of that
VM here, 1008), CONFLICT (the domain is not running, 4409), INVALID_INPUT
(1008). When the domain stops the socket closes with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import libvirt  # type: ignore[import-untyped]
import orjson
from aiohttp import WSMsgType, web

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, NOT_FOUND

from ..host import domain as _domain
from ..host.console import ByteChannel, ChannelError, ConsoleBusy, open_display, open_serial
from ..host.libvirt import Libvirt
from .context import NodeContext
from .ws import BadMessage, _dimension, _subscribe

log = logging.getLogger("vapor.agent.console")

Kind = Literal["console", "vnc"]
WHAT: dict[Kind, str] = {"console": "serial console", "vnc": "display (VNC)"}
CLOSE_CODES = {CONFLICT: 4409}
TAKEOVER_WAIT = 5.0  # seconds a taken-over session has to close before the new one opens anyway


class Refused(Exception):
    """The session cannot open: a contract code and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Session:
    """One open console or display session: who has it, since when, and how to tell it it was taken over."""

    user: str
    since: float = field(default_factory=time.time)
    taken_by: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def since_text(self) -> str:
        """When it opened, in UTC (ISO 8601, seconds)."""
        return datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Sessions:
    """The open sessions of this agent, by VM uid and kind."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, Kind], Session] = {}

    def claim(self, uid: str, kind: Kind, user: str, *, force: bool, what: str) -> tuple[Session, Session | None]:
        """A new session for ``user`` and the one it takes over; Refused when one is open and not ``force``."""
        key = (uid, kind)
        held = self.open.get(key)
        if held is not None and not force:
            raise Refused(
                CONFLICT,
                f"the {what} is open by {held.user} since {held.since_text}; subscribe with force to take over",
            )
        mine = self.open[key] = Session(user)
        if held is not None and not held.taken_by.done():
            held.taken_by.set_result(user)
        return mine, held

    def release(self, uid: str, kind: Kind, session: Session) -> None:
        """Forget ``session`` (unless another one took its place already)."""
        if self.open.get((uid, kind)) is session:
            del self.open[(uid, kind)]
        session.closed.set()


async def _refuse(ws: web.WebSocketResponse, code: str, message: str) -> web.WebSocketResponse:
    await ws.send_str(orjson.dumps({"type": "error", "error": {"code": code, "message": message}}).decode())
    await ws.close(code=CLOSE_CODES.get(code, 1008), message=message[:120].encode())
    return ws


async def _running_domain(libvirt_: Libvirt, namespace: str, name: str, uid: str) -> libvirt.virDomain:
    """The VM's domain on this host, running; Refused otherwise."""
    dom = await libvirt_.lookup(_domain.domain_name(namespace, name))
    meta = None
    if dom is not None:
        with contextlib.suppress(libvirt.libvirtError):
            text = await libvirt_.call(dom.metadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, _domain.METADATA_NS, 0)
            meta = _domain.VaporMetadata.from_xml(text)
    if dom is None or meta is None or (uid and meta.uid != uid):
        raise Refused(NOT_FOUND, f"VM {namespace}/{name} has no domain on this host")
    if not await libvirt_.call(dom.isActive):
        raise Refused(CONFLICT, f"the VM {namespace}/{name} is not running")
    return dom


def _options(payload: dict[str, object]) -> bool:
    """``force`` of the subscribe payload (cols and rows must be sane when given)."""
    force = payload.get("force", False)
    if not isinstance(force, bool):
        raise BadMessage("force must be true or false")
    _dimension(payload, "cols", 80)
    _dimension(payload, "rows", 24)
    return force


async def _open(libvirt_: Libvirt, dom: libvirt.virDomain, kind: Kind, *, force: bool) -> ByteChannel:
    if kind == "vnc":
        return await open_display(libvirt_, dom)
    return await open_serial(libvirt_, dom, force=force)


async def _relay(ws: web.WebSocketResponse, channel: ByteChannel, session: Session) -> str | None:
    """Bytes both ways until the socket or the channel ends; the user who took the session over, if one did."""

    async def to_client() -> None:
        while data := await channel.read():
            await ws.send_bytes(data)

    async def to_domain() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await channel.write(message.data)
            elif message.type != WSMsgType.TEXT:  # text: control messages, none of which needs an answer
                break

    pumps = [asyncio.create_task(to_client()), asyncio.create_task(to_domain())]
    try:
        waited: list[asyncio.Future[Any]] = [*pumps, session.taken_by]
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    return session.taken_by.result() if session.taken_by.done() else None


async def ws_console(libvirt_: Libvirt, sessions: Sessions, kind: Kind, request: web.Request) -> web.WebSocketResponse:
    """``/ws/vms/{namespace}/{name}/console`` and ``.../vnc`` (see the module's docstring)."""
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    uid, user = request.query.get("uid", ""), request.query.get("user", "") or "(unknown)"
    what = f"{WHAT[kind]} of VM {namespace}/{name}"
    try:
        force = _options(await _subscribe(ws))
        dom = await _running_domain(libvirt_, namespace, name, uid)
        session, held = sessions.claim(uid or f"{namespace}/{name}", kind, user, force=force, what=what)
    except BadMessage as exc:
        return await _refuse(ws, INVALID_INPUT, str(exc))
    except Refused as exc:
        return await _refuse(ws, exc.code, exc.message)
    key = uid or f"{namespace}/{name}"
    try:
        if held is not None:  # told to go: let it close before the console is taken from it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.closed.wait(), TAKEOVER_WAIT)
        try:
            channel = await _open(libvirt_, dom, kind, force=force)
        except ConsoleBusy as exc:
            return await _refuse(ws, CONFLICT, f"the {what} is busy: {exc}; subscribe with force to take over")
        except ChannelError as exc:
            return await _refuse(ws, CONFLICT, str(exc))
        replaced = {"user": held.user, "since": held.since_text} if held is not None else None
        log.info("console opened", extra={"vm": f"{namespace}/{name}", "kind": kind, "user": user, "force": force})
        await ws.send_str(orjson.dumps({"type": "ready", "replaced": replaced}).decode())
        try:
            taken_by = await _relay(ws, channel, session)
        finally:
            await channel.close()
        log.info("console closed", extra={"vm": f"{namespace}/{name}", "kind": kind, "user": user, "by": taken_by})
        if taken_by is not None:
            return await _refuse(ws, CONFLICT, f"taken over by {taken_by}")
        await ws.close(code=1000, message=b"the console ended")
        return ws
    finally:
        sessions.release(key, kind, session)


def routes(node: NodeContext) -> list[web.RouteDef]:
    """``/ws/vms/{namespace}/{name}/console`` and ``/ws/vms/{namespace}/{name}/vnc`` (with the agent's libvirt)."""
    libvirt_ = node.extras.get("libvirt")
    if not isinstance(libvirt_, Libvirt):
        return []  # a node API without the agent's libvirt connection (tests of other modules)
    sessions: Sessions = node.extras.setdefault("console_sessions", Sessions())

    async def console(request: web.Request) -> web.WebSocketResponse:
        return await ws_console(libvirt_, sessions, "console", request)

    async def vnc(request: web.Request) -> web.WebSocketResponse:
        return await ws_console(libvirt_, sessions, "vnc", request)

    return [web.get("/ws/vms/{namespace}/{name}/console", console), web.get("/ws/vms/{namespace}/{name}/vnc", vnc)]
