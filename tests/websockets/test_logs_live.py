"""/ws/logs against a LIVE systemd-journald: entries sent after the subscription arrive while it follows.

Each test starts its own journald (a namespace instance, tests/support/journald.py)
and the agent reads its folder. A subscription is known to be reading the
journal once it has delivered the last entry written before it (``lines``);
only then are the new entries sent. Live entries have no ``_SYSTEMD_UNIT``
here (PID 1 is not systemd), so ``unit`` finds them by syslog identifier; unit
names are tested on the fixture journal in test_websockets.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from ..gateway.conftest import Users, login
from ..support import journald as live
from ..support.journald import Journald
from ..support.wait import eventually
from .conftest import authenticate, receive, send

journal = live.journal  # the fixture

DEADLINE = 60.0  # generous: a live entry reaches the socket within a second or two


@pytest.fixture
async def token(gw_client: Client, users: Users) -> str:
    return str((await login(gw_client, users.admin))["token"])


async def written(journald: Journald, count: int) -> None:
    """Wait until journald has written ``count`` entries of its identifier (it writes a moment after a send)."""
    await eventually(lambda: len(journald.entries(SYSLOG_IDENTIFIER=journald.identifier)) >= count, DEADLINE)


@contextlib.asynccontextmanager
async def following(client: Client, token: str, **filters: Any) -> AsyncIterator[Socket]:
    """/ws/logs authenticated and subscribed with ``filters``."""
    async with client.websocket("/ws/logs") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe", "payload": {"filters": filters}})
        yield ws


async def next_logs(ws: Socket, count: int, journald: Journald) -> list[dict[str, Any]]:
    """The next ``count`` messages, which must all be ``log`` (else: what journald wrote, to tell who lost it)."""
    found = []
    for _ in range(count):
        try:
            message = await asyncio.wait_for(receive(ws), DEADLINE)
        except TimeoutError:
            wrote = [(e["MESSAGE"], e["PRIORITY"]) for e in journald.entries()]
            files = sorted(p.name for p in journald.directory.iterdir())
            raise AssertionError(
                f"no message in {DEADLINE:.0f}s after {found}; journald wrote {wrote} to {files}"
            ) from None
        assert message["type"] == "log", message
        found.append(message["data"])
    return found


async def test_follow_delivers_entries_sent_after_the_subscription_filtered_by_priority(
    gw_client: Client, token: str, journal: Journald
) -> None:
    journal.send("before the subscription", priority=3)
    await written(journal, 1)
    async with following(gw_client, token, priority="warning", follow=True, lines=1) as ws:
        (last,) = await next_logs(ws, 1, journal)  # the newest entry at warning or worse (journald's own are info)
        assert last["message"] == "before the subscription"
        journal.send("too chatty", priority=6)
        journal.send("far too chatty", priority=7)
        journal.send("it broke", priority=3)
        journal.logger("it may break", priority="daemon.warning")
        # the native socket's entries are written in the order sent (the syslog socket's may come between them),
        # so had the filter let the chatty ones through, one of them would be among the next two
        new = sorted(await next_logs(ws, 2, journal), key=lambda e: str(e["message"]))
    assert [(e["message"], e["priority"], e["unit"]) for e in new] == [
        ("it broke", "error", journal.identifier),
        ("it may break", "warning", journal.identifier),
    ]
    assert new[0]["pid"] == os.getpid() and new[0]["timestamp"] > last["timestamp"]


async def test_follow_by_identifier_and_priority_together(gw_client: Client, token: str, journal: Journald) -> None:
    mine = journal.identifier
    journal.send("mine, earlier", priority=2)
    await written(journal, 1)
    async with following(gw_client, token, unit=mine, priority="err", lines=5) as ws:
        assert [e["message"] for e in await next_logs(ws, 1, journal)] == ["mine, earlier"]
        journal.send("someone else's error", priority=3, identifier=f"{mine}-other")
        journal.logger("mine, only info", priority="user.info")
        journal.logger("mine, an error", priority="user.err")
        (new,) = await next_logs(ws, 1, journal)
    assert (new["message"], new["priority"], new["unit"]) == ("mine, an error", "error", mine)


async def test_follow_goes_on_after_the_journal_rotates(gw_client: Client, token: str, journal: Journald) -> None:
    """journald closes its file and starts a new one: the follower reads the new file."""
    journal.send("in file 1")
    await written(journal, 1)
    async with following(gw_client, token, unit=journal.identifier, follow=True, lines=1) as ws:
        assert [e["message"] for e in await next_logs(ws, 1, journal)] == ["in file 1"]
        for n in (2, 3):
            journal.rotate()
            journal.send(f"in file {n}")
            assert [e["message"] for e in await next_logs(ws, 1, journal)] == [f"in file {n}"]
    assert len(list(journal.directory.glob("*.journal"))) >= 3


async def test_without_follow_the_last_lines_then_end(gw_client: Client, token: str, journal: Journald) -> None:
    for i in range(5):
        journal.send(f"line {i}", priority=i)
    await written(journal, 5)
    async with following(gw_client, token, unit=journal.identifier, follow=False, lines=3) as ws:
        got = await next_logs(ws, 3, journal)
        assert (await asyncio.wait_for(receive(ws), DEADLINE))["type"] == "end"
    assert [(e["message"], e["priority"]) for e in got] == [
        ("line 2", "critical"),
        ("line 3", "error"),
        ("line 4", "warning"),
    ]
