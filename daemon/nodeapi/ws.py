"""The agent's streaming endpoints (node-local API): /ws/metrics, /ws/logs and /ws/terminal.

The gateway authenticates the client (the contract's ``auth`` message) and
relays the rest of the conversation here; it forwards the client's
``subscribe`` message first. Messages are JSON text frames:

- /ws/metrics: ``{type: 'subscribe'}`` -> every second one
  ``{type: 'metric', metric: cpu|memory|disk|network, timestamp, data}`` each.
  One sampler per agent feeds every subscriber.
- /ws/logs: ``{type: 'subscribe', payload: {filters: {unit, priority, follow, lines}}}``
  -> ``{type: 'log', data: {timestamp, priority, unit, message, hostname, pid}}``
  for the last ``lines`` (default 100) matching entries, then new ones while
  ``follow`` (default true); without follow, ``{type: 'end'}`` and close.
- /ws/terminal?user=<name>&expires=<unix seconds>: ``{type: 'subscribe',
  payload: {cols, rows}}`` -> a PTY login session as that user through the
  node's PAM (see .terminal); ``{type: 'input', data}``, ``{type: 'resize',
  cols, rows}``; the agent sends ``{type: 'output', data}`` and ``{type:
  'exit', code}`` when the shell ends. Closing the socket hangs up the session.

A bad message gets ``{type: 'error', error: {code, message}}`` and the socket closes (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from vapor.agentapi.errors import INTERNAL_ERROR, INVALID_INPUT
from vapor.agentapi.journalquery import parse_priority

from ..host import sample as _metrics_stream
from ..host.journal import JournalFollower, journal_path
from .context import NodeContext, host_root_of

log = logging.getLogger("vapor.agent.ws")

MAX_LINES = 10_000
READ_CHUNK = 65536


class BadMessage(Exception):
    """The client's message does not follow the protocol."""


async def _refuse(ws: web.WebSocketResponse, code: str, message: str) -> web.WebSocketResponse:
    await ws.send_str(orjson.dumps({"type": "error", "error": {"code": code, "message": message}}).decode())
    await ws.close(code=1008, message=message[:120].encode())
    return ws


async def _subscribe(ws: web.WebSocketResponse) -> dict[str, Any]:
    """The payload of the first message, which must be ``{type: 'subscribe'}``."""
    message = await ws.receive()
    if message.type != WSMsgType.TEXT:
        raise BadMessage("the first message must be a JSON text message {type: 'subscribe'}")
    try:
        body = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        raise BadMessage("the message is not JSON") from None
    if not isinstance(body, dict) or body.get("type") != "subscribe":
        raise BadMessage("expected {type: 'subscribe'} first")
    payload = body.get("payload") or {}
    if not isinstance(payload, dict):
        raise BadMessage("payload must be an object")
    return payload


# --- metrics ----------------------------------------------------------------------------------------------------


class MetricsHub:
    """Samples once a second while anyone listens, and hands each sample to every listener."""

    def __init__(self) -> None:
        self.listeners: set[asyncio.Queue[list[dict[str, Any]]]] = set()
        self.task: asyncio.Task[None] | None = None

    def join(self) -> asyncio.Queue[list[dict[str, Any]]]:
        """A queue of new samples for one listener (the sampler starts with the first)."""
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=5)
        self.listeners.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        return queue

    def leave(self, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        """Stop feeding ``queue`` (the sampler ends with the last listener)."""
        self.listeners.discard(queue)

    async def _run(self) -> None:
        while self.listeners:
            messages = await asyncio.to_thread(_metrics_stream.sample)
            for queue in list(self.listeners):
                if queue.full():  # a slow reader loses its oldest sample, never blocks the others
                    queue.get_nowait()
                queue.put_nowait(messages)
            await asyncio.sleep(_metrics_stream.INTERVAL)


async def _ws_metrics(node: NodeContext, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    try:
        await _subscribe(ws)
    except BadMessage as exc:
        return await _refuse(ws, INVALID_INPUT, str(exc))
    hub: MetricsHub = node.extras.setdefault("metrics_hub", MetricsHub())
    queue = hub.join()

    async def send() -> None:
        while True:
            for message in await queue.get():
                await ws.send_str(orjson.dumps(message).decode())

    sender = asyncio.create_task(send())
    try:
        async for message in ws:  # the client's further messages are ignored
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        sender.cancel()
        hub.leave(queue)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await sender
    return ws


# --- logs -------------------------------------------------------------------------------------------------------


def _priority(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_priority(value)
    except ValueError as exc:
        raise BadMessage(f"priority {exc}") from None


async def _ws_logs(node: NodeContext, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    try:
        payload = await _subscribe(ws)
        filters = payload.get("filters") or {}
        if not isinstance(filters, dict):
            raise BadMessage("filters must be an object")
        unit = filters.get("unit")
        if unit is not None and (not isinstance(unit, str) or not unit or len(unit) > 256 or "\n" in unit):
            raise BadMessage("unit must be a unit name")
        priority = _priority(filters.get("priority"))
        follow = filters.get("follow", True)
        lines = filters.get("lines", 100)
        if not isinstance(follow, bool):
            raise BadMessage("follow must be true or false")
        if not isinstance(lines, int) or isinstance(lines, bool) or not 0 <= lines <= MAX_LINES:
            raise BadMessage(f"lines must be an integer from 0 to {MAX_LINES}")
    except BadMessage as exc:
        return await _refuse(ws, INVALID_INPUT, str(exc))
    path = journal_path()
    try:
        follower = await asyncio.to_thread(JournalFollower, unit, priority, path)
    except (ImportError, OSError) as exc:
        return await _refuse(ws, INTERNAL_ERROR, f"the journal cannot be read: {exc}")
    closed = asyncio.Event()

    async def watch_close() -> None:
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        closed.set()

    watcher = asyncio.create_task(watch_close())
    try:
        for entry in await asyncio.to_thread(follower.last, lines):
            await ws.send_str(orjson.dumps({"type": "log", "data": entry}).decode())
        if not follow:
            await ws.send_str('{"type":"end"}')
        while follow and not closed.is_set() and not ws.closed:
            for entry in await asyncio.to_thread(follower.wait_new, 1.0):
                await ws.send_str(orjson.dumps({"type": "log", "data": entry}).decode())
    except ConnectionError:
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await asyncio.to_thread(follower.close)
        await ws.close()
    return ws


# --- terminal (see .terminal) ---------------------------------------------------------------------------------


def _dimension(payload: dict[str, Any], name: str, default: int) -> int:
    value = payload.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
        raise BadMessage(f"{name} must be an integer from 1 to 1000")
    return value


def routes(node: NodeContext) -> list[web.RouteDef]:
    """``/ws/metrics``, ``/ws/logs`` and ``/ws/terminal``."""
    root = host_root_of(node)

    async def metrics(request: web.Request) -> web.WebSocketResponse:
        return await _ws_metrics(node, request)

    async def logs(request: web.Request) -> web.WebSocketResponse:
        return await _ws_logs(node, request)

    from .terminal import TerminalSettings, ws_terminal  # it builds on this module's helpers

    settings = TerminalSettings.of(node.config)

    async def terminal(request: web.Request) -> web.WebSocketResponse:
        return await ws_terminal(root, settings, request)

    return [web.get("/ws/metrics", metrics), web.get("/ws/logs", logs), web.get("/ws/terminal", terminal)]
