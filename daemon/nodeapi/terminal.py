"""The agent's /ws/terminal: a PTY login session for the user the gateway names, for as long as that user may log in.

``/ws/terminal?user=<name>&expires=<unix seconds>``: the gateway
authenticated the client and checked it may have a terminal; ``expires`` is
when its token expires. After the ``subscribe`` message (``cols``, ``rows``;
a ``shell`` in it is ignored: the shell is the account's own) the agent
refuses with ``{type: 'error'}``, before any process starts, a user the
node does not know (INVALID_INPUT), root unless ``--terminal-allow-root``,
an account without a login shell, and one the node's PAM account stage or
password lock refuses (PERMISSION_DENIED). Then the session runs (see
vapor.agent.host.terminal and .session): ``input``/``resize`` in, ``output`` and ``exit`` out.

While it runs the agent asks the node again every
``--terminal-check-interval`` seconds whether the account may still log in,
and hangs the session up (``{type: 'error', error: {code: 'UNAUTHORIZED'}}``,
then close) when it may not (locked, expired, removed) or when the token
expires. Closing the socket hangs the session up too: the shell and every
process left in its session end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from vapor.agentapi.errors import INVALID_INPUT, PERMISSION_DENIED, UNAUTHORIZED

from ..host.hostroot import HostRoot
from ..host.terminal import LoginAccount, Terminal
from ..host.useraccounts import AccountError
from .ws import READ_CHUNK, BadMessage, _dimension, _refuse, _subscribe

if TYPE_CHECKING:
    from .._config import AgentConfig

log = logging.getLogger("vapor.agent.ws")


@dataclass(frozen=True)
class TerminalSettings:
    """The agent's terminal flags: the PAM service, whether root may have one, how often the account is checked."""

    service: str
    allow_root: bool
    check_interval: float

    @classmethod
    def of(cls, config: AgentConfig) -> TerminalSettings:
        """The settings of the agent's flags."""
        return cls(config.pam_service, config.terminal_allow_root, config.terminal_check_interval)


class Refused(Exception):
    """The user may not have a terminal now: a contract code and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _expires(request: web.Request) -> float | None:
    text = request.query.get("expires")
    if text is None:
        return None
    try:
        return float(int(text))
    except ValueError:
        raise BadMessage("expires must be Unix seconds") from None


async def _may_log_in(root: HostRoot, service: str, user: str) -> None:
    """Refused unless the node's PAM account stage and password lock let ``user`` log in now."""
    standing = await root.call("standing", service, user)
    if standing is None:
        raise Refused(UNAUTHORIZED, f"user {user[:64]!r} no longer exists on this host")
    if standing["refused"]:
        raise Refused(UNAUTHORIZED, f"user {user[:64]!r} may not log in: {standing['refused']}")


async def _open(root: HostRoot, node: TerminalSettings, user: str, payload: dict[str, Any]) -> Terminal:
    cols, rows = _dimension(payload, "cols", 80), _dimension(payload, "rows", 24)
    found = await root.call("login_account", user) if user else None
    if found is None:
        raise BadMessage(f"no such user on this host: {user[:64]!r}")
    account = LoginAccount.from_dict(found)
    refusal = account.refusal(allow_root=node.allow_root)
    if refusal:
        raise Refused(PERMISSION_DENIED, refusal)
    try:
        await _may_log_in(root, node.service, user)
    except Refused as exc:
        raise Refused(PERMISSION_DENIED, exc.message) from None
    return Terminal.open(
        account, service=node.service, root=root.chroot, allow_root=node.allow_root, cols=cols, rows=rows
    )


async def _guard(root: HostRoot, node: TerminalSettings, user: str, expires: float | None) -> Refused:
    """Returns (ends the session) when the token expires or the account may no longer log in."""
    while True:
        wait = node.check_interval if expires is None else min(node.check_interval, expires - time.time())
        await asyncio.sleep(max(0.0, wait))
        if expires is not None and time.time() >= expires:
            return Refused(UNAUTHORIZED, "the token has expired: log in again to open a terminal")
        try:
            await _may_log_in(root, node.service, user)
        except Refused as exc:
            return exc
        except AccountError as exc:  # the node's root could not be asked this time: ask again next time
            log.warning("could not check a terminal's account", extra={"user": user, "error": exc.message})


async def ws_terminal(root: HostRoot, node: TerminalSettings, request: web.Request) -> web.WebSocketResponse:
    """``/ws/terminal`` (see the module's docstring)."""
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    user = request.query.get("user", "")
    try:
        expires = _expires(request)
        terminal = await _open(root, node, user, await _subscribe(ws))
    except BadMessage as exc:
        return await _refuse(ws, INVALID_INPUT, str(exc))
    except Refused as exc:
        return await _refuse(ws, exc.code, exc.message)
    except AccountError as exc:  # the node's root could not be asked
        return await _refuse(ws, exc.code, exc.message)
    log.info("terminal opened", extra={"user": user, "pid": terminal.pid})
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(terminal.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell has gone
            data = b""
        if not data:
            loop.remove_reader(terminal.fd)
        output.put_nowait(data or None)

    loop.add_reader(terminal.fd, readable)

    async def pump_output() -> None:
        while (data := await output.get()) is not None:
            text = data.decode("utf-8", "replace")
            await ws.send_str(orjson.dumps({"type": "output", "data": text}).decode())

    async def pump_input() -> None:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                break
            try:
                body = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(body, dict):
                continue
            if body.get("type") == "input" and isinstance(body.get("data"), str):
                await asyncio.to_thread(terminal.write, body["data"].encode())
            elif body.get("type") == "resize":
                with contextlib.suppress(BadMessage):
                    terminal.resize(_dimension(body, "cols", 80), _dimension(body, "rows", 24))

    guard = asyncio.create_task(_guard(root, node, user, expires))
    tasks = [asyncio.create_task(pump_output()), asyncio.create_task(pump_input()), guard]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        refused = guard.result() if guard.done() and not guard.cancelled() and not guard.exception() else None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(terminal.fd)
        code = await asyncio.to_thread(terminal.close)
        log.info(
            "terminal closed",
            extra={"user": user, "pid": terminal.pid, "exit_code": code, "reason": refused and refused.message},
        )
        if refused is not None:
            await _refuse(ws, refused.code, refused.message)
        elif not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(orjson.dumps({"type": "exit", "code": code}).decode())
            await ws.close()
    return ws
