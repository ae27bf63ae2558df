"""A VM's consoles as WebSockets: /ws/vms/{id}/console (serial) and /ws/vms/{id}/vnc (display), admins only.

``{id}`` is the VM's uid, or its name with ``?namespace=`` (default
``default``), as in the REST routes. Protocol:

1. ``{type: 'auth', payload: {token}}``, answered ``{type: 'auth', status:
   'ok', user}`` (as the other sockets, see ._sockets);
2. ``{type: 'subscribe', payload: {force: false, cols: 80, rows: 24}}``;
3. then binary frames both ways carry the raw bytes: the serial port's
   characters, or for ``/vnc`` the RFB stream of the VM's VNC server (hand
   the socket to a noVNC-style client here). Text frames are JSON control
   messages: ``{type: 'resize', cols, rows}`` is accepted and ignored (a
   serial port has no window size); the gateway sends text only to refuse
   or end a session.

One session per VM and kind: a second subscribe is refused with
``{type: 'error', error: {code: 'CONFLICT', message: '... open by <user>
since <time>; subscribe with force to take over'}}`` and closed with 4409;
with ``force: true`` it takes the session over, and the first socket gets
``CONFLICT`` ``taken over by <user>`` and closes with 4409. The agent of the
VM's host keeps the sessions and streams libvirt's console (or QEMU's VNC
server, which listens on no address) to the gateway, see
vapor.agent.nodeapi.console. Every session that opens leaves an Event on the
VM naming the user (reason ``ConsoleOpened`` or ``DisplayOpened``).

Refusals: a viewer PERMISSION_DENIED (4403), an unknown VM NOT_FOUND, a VM
that is not running (or not placed yet) CONFLICT "the VM is not running"
(4409). Each socket counts against the 10 WebSockets per client (RATE_LIMITED
4429) and closes with UNAUTHORIZED (4401) when its token expires; the
session ends with it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import aiohttp
import orjson
from quart import Blueprint, websocket

from vapor.agentapi.errors import AGENT_UNREACHABLE, CONFLICT, PERMISSION_DENIED
from vapor.kube import KubeError
from vapor.model import Host, VirtualMachine

from ._agents import agent_websocket, agents, pipe_websocket
from ._errors import APIError
from ._lookups import find_host, find_vm
from ._sockets import authenticate, read_message, serve_socket, until_expiry
from ._writes import record_event

log = logging.getLogger("vapor.gateway.consoles")

blueprint = Blueprint("consoles", __name__)

Kind = Literal["console", "vnc"]
WHAT: dict[Kind, str] = {"console": "serial console", "vnc": "display (VNC)"}
REASON: dict[Kind, str] = {"console": "ConsoleOpened", "vnc": "DisplayOpened"}
LIVE_PHASES = ("Running", "Paused")  # a domain runs: its console answers


def _placed(vm: VirtualMachine) -> Host:
    """The Host the running ``vm`` is on; CONFLICT when it does not run."""
    where = f"{vm.metadata.namespace}/{vm.name}"
    if vm.phase not in LIVE_PHASES or vm.host is None:
        phase = vm.phase or "not placed yet"
        raise APIError(409, CONFLICT, f"the VM {where} is not running ({phase}); start it first")
    try:
        return find_host(vm.host)
    except APIError:
        raise APIError(409, CONFLICT, f"the VM {where} is not running: its host {vm.host!r} is gone") from None


async def _agent_answer(upstream: aiohttp.ClientWebSocketResponse, host: Host) -> dict[str, Any]:
    """The agent's first message: ``ready``, or its refusal raised as an APIError."""
    message = await upstream.receive(timeout=agents().timeout)
    body = orjson.loads(message.data) if message.type == aiohttp.WSMsgType.TEXT else None
    if not isinstance(body, dict):
        raise APIError(502, AGENT_UNREACHABLE, f"the agent of host {host.metadata.name!r} closed the console")
    if body.get("type") == "error":
        error = body.get("error") or {}
        raise APIError(409, str(error.get("code")), str(error.get("message")))
    return body


async def _relay(vm: VirtualMachine, host: Host, kind: Kind, user: str, subscribe: str) -> None:
    namespace = vm.metadata.namespace or "default"
    path = f"/ws/vms/{namespace}/{vm.name}/{kind}"
    params = {"uid": vm.metadata.uid, "user": user}
    async with agent_websocket(path, host=host, params=params) as upstream:
        await upstream.send_str(subscribe)
        ready = await _agent_answer(upstream, host)
        replaced = ready.get("replaced")
        note = f"User {user!r} opened the {WHAT[kind]} through the gateway"
        if isinstance(replaced, dict):
            note += f", taking it over from {replaced.get('user')!r}"
        try:
            await record_event(vm, reason=REASON[kind], note=note, action="Connect")
        except KubeError as exc:  # the session is open: a missing Event is logged, the console stays
            log.warning("could not record a console's Event", extra={"vm": vm.name, "error": str(exc)})
        log.info("console opened", extra={"vm": f"{namespace}/{vm.name}", "kind": kind, "user": user})
        code = await pipe_websocket(upstream)
    if code is not None and 4000 <= code < 5000:  # the agent's refusal (a takeover: 4409), after its message
        await websocket.close(code)


async def _session(vm_id: str, kind: Kind, client: str) -> None:
    claims = await authenticate()
    if claims.role != "admin":
        raise APIError(
            403, PERMISSION_DENIED, f"user {claims.username!r} may not open a VM's {WHAT[kind]}: admins only"
        )
    await websocket.send(orjson.dumps({"type": "auth", "status": "ok", "user": claims.username}).decode())
    _, subscribe = await read_message("subscribe")
    vm = find_vm(vm_id, websocket.args.get("namespace") or "default")
    host = _placed(vm)
    await until_expiry(claims, _relay(vm, host, kind, claims.username, subscribe))


@blueprint.websocket("/ws/vms/<vm_id>/console")
async def ws_vm_console(vm_id: str) -> None:
    """The serial console of a running VM (admin): raw bytes in binary frames both ways, one session at a time."""
    await serve_socket(lambda client: _session(vm_id, "console", client))


@blueprint.websocket("/ws/vms/<vm_id>/vnc")
async def ws_vm_vnc(vm_id: str) -> None:
    """The display of a running VM (admin): its VNC server's RFB stream in binary frames, one session at a time."""
    await serve_socket(lambda client: _session(vm_id, "vnc", client))


__all__ = ["blueprint"]
