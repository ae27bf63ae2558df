"""GET /api/v1/logs against a LIVE systemd-journald: entries sent now, read back through the gateway and the agent.

Each test starts its own journald (a namespace instance, tests/support/journald.py)
and points the agent at its folder while journald writes it. Entries are sent
over journald's native socket and by ``logger`` to its syslog socket; journald
stamps them (microseconds), adds the sender's PID and the hostname. Without
systemd as PID 1 live entries have no ``_SYSTEMD_UNIT``, so ``service`` finds
them by syslog identifier here; unit names are tested on the fixture journal
of test_logs.py, whose ``node`` (journal routes only) and helpers this module
reuses with ``journal`` overridden by the live one.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from ..support import journald as live
from ..support.journald import Journald
from ..support.wait import eventually
from . import test_logs
from .test_logs import NAMES, logs

pytestmark = pytest.mark.controlplane

# fixtures of other modules, under the names the tests ask for: test_logs' node asks for the live journal here
journal, node, token = live.journal, test_logs.node, test_logs.token

COUNT = 24


def send_batch(journald: Journald, count: int = COUNT, first: int = 0) -> list[str]:
    """``count`` entries at priorities 0..7 in turn; their messages, newest first."""
    for i in range(first, first + count):
        journald.send(f"live {i}", priority=i % 8)
    return [f"live {i}" for i in reversed(range(first, first + count))]


async def settled(client: Client, token: str, count: int, **params: Any) -> dict[str, Any]:
    """The answer (one page of up to 1000) once ``count`` entries match: journald writes a moment after a send."""

    async def probe() -> dict[str, Any] | None:
        data = await logs(client, token, page_size=1000, **params)
        return data if data["total_count"] >= count else None

    data: dict[str, Any] = await eventually(probe, timeout=60, what=f"{count} entries matching {params}")
    assert data["total_count"] == count, data
    return data


def micros(timestamp: str) -> int:
    """Microseconds since the epoch of an entry's ``timestamp`` (RFC 3339, UTC)."""
    stamp = dt.datetime.fromisoformat(timestamp)
    return (stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def messages(data: dict[str, Any]) -> list[str]:
    return [e["message"] for e in data["logs"]]


async def test_live_entries_newest_first_in_pages_with_the_total(
    gw_client: Client, token: str, journal: Journald
) -> None:
    before = dt.datetime.now(dt.UTC)
    sent = send_batch(journal)
    everything = await settled(gw_client, token, COUNT, service=journal.identifier)
    assert messages(everything) == sent
    stamps = [micros(e["timestamp"]) for e in everything["logs"]]
    assert stamps == sorted(stamps, reverse=True)
    assert micros(before.isoformat()) <= stamps[-1]  # stamped by journald when it received them
    top = everything["logs"][0]
    assert top == {
        "timestamp": top["timestamp"],
        "priority": NAMES[(COUNT - 1) % 8],
        "unit": journal.identifier,
        "message": f"live {COUNT - 1}",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),  # journald's view of the sender (SCM_CREDENTIALS), not a field the test wrote
    }
    pages = [await logs(gw_client, token, service=journal.identifier, page=n, page_size=10) for n in (1, 2, 3, 4)]
    assert [p["total_count"] for p in pages] == [COUNT] * 4
    assert [messages(p) for p in pages] == [sent[:10], sent[10:20], sent[20:], []]


async def test_without_filters_the_whole_journal_counts(gw_client: Client, token: str, journal: Journald) -> None:
    """journald's own entries ("Journal started") are in the same journal: every entry is counted once."""
    sent = send_batch(journal)
    await settled(gw_client, token, COUNT, service=journal.identifier)
    own = await logs(gw_client, token, service="systemd-journald")
    assert own["total_count"] >= 1 and {e["unit"] for e in own["logs"]} == {"systemd-journald"}
    whole = await logs(gw_client, token)
    assert whole["total_count"] == COUNT + own["total_count"]
    assert {e["unit"] for e in whole["logs"]} == {journal.identifier, "systemd-journald"}
    assert [m for m in messages(whole) if m.startswith("live ")] == sent


@pytest.mark.parametrize("priority", ["err", "3"])
async def test_priority_keeps_that_level_and_worse(
    gw_client: Client, token: str, journal: Journald, priority: str
) -> None:
    sent = send_batch(journal)
    severe = [m for m in sent if int(m.split()[1]) % 8 <= 3]
    data = await settled(gw_client, token, len(severe), priority=priority)  # journald's own entries are info
    assert messages(data) == severe
    assert {e["priority"] for e in data["logs"]} == {"emergency", "alert", "critical", "error"}
    second = await logs(gw_client, token, priority=priority, service=journal.identifier, page=2, page_size=4)
    assert (second["total_count"], messages(second)) == (len(severe), severe[4:8])
    warnings = await logs(gw_client, token, priority="warning", service=journal.identifier)
    assert messages(warnings) == [m for m in sent if int(m.split()[1]) % 8 <= 4]


async def test_since_and_until_on_journald_stamps(gw_client: Client, token: str, journal: Journald) -> None:
    """Windows cut at the exact microsecond of live entries, in both forms; both ends inclusive."""
    send_batch(journal)
    newest_first = (await settled(gw_client, token, COUNT, service=journal.identifier))["logs"]
    stamps = [micros(e["timestamp"]) for e in newest_first]
    low, high = stamps[14], stamps[5]  # the 10th .. 19th entry sent

    def inside(since: int, until: int) -> list[str]:
        return [e["message"] for e, us in zip(newest_first, stamps, strict=True) if since <= us <= until]

    window = inside(low, high)
    assert len(window) >= 10
    iso = await logs(
        gw_client,
        token,
        service=journal.identifier,
        since=newest_first[14]["timestamp"],
        until=newest_first[5]["timestamp"],
    )
    assert (iso["total_count"], messages(iso)) == (len(window), window)
    unix = await logs(
        gw_client,
        token,
        service=journal.identifier,
        since=f"{low // 1_000_000}.{low % 1_000_000:06d}",
        until=f"{high // 1_000_000}.{high % 1_000_000:06d}",
        page=2,
        page_size=4,
    )
    assert (unix["total_count"], messages(unix)) == (len(window), window[4:8])
    one = await logs(gw_client, token, since=newest_first[9]["timestamp"], until=newest_first[9]["timestamp"])
    assert messages(one) == inside(stamps[9], stamps[9])
    after = await logs(gw_client, token, service=journal.identifier, since=newest_first[2]["timestamp"], priority="err")
    assert messages(after) == [m for m in inside(stamps[2], stamps[0]) if int(m.split()[1]) % 8 <= 3]
    before = await logs(gw_client, token, service=journal.identifier, until=newest_first[-2]["timestamp"])
    assert messages(before) == inside(0, stamps[-2])


async def test_syslog_entries_from_logger_are_found_by_identifier(
    gw_client: Client, token: str, journal: Journald
) -> None:
    other = f"{journal.identifier}-other"
    journal.logger("disk almost full", priority="daemon.err")
    journal.logger("checked", priority="daemon.info")
    journal.send("not mine", identifier=other, priority=3)
    data = await settled(gw_client, token, 2, service=journal.identifier)
    assert [(e["message"], e["priority"], e["unit"]) for e in data["logs"]] == [
        ("checked", "info", journal.identifier),
        ("disk almost full", "error", journal.identifier),
    ]
    assert all(e["pid"] not in (None, os.getpid()) for e in data["logs"])  # logger's own PID
    errors = await logs(gw_client, token, service=journal.identifier, priority="err")
    assert messages(errors) == ["disk almost full"]
    assert messages(await settled(gw_client, token, 1, service=other)) == ["not mine"]


async def test_entries_written_later_and_after_a_rotation_are_read(
    gw_client: Client, token: str, journal: Journald
) -> None:
    """The agent opens the folder per request: new entries and the files of a rotation are seen, each once."""
    older = send_batch(journal, count=5)
    assert messages(await settled(gw_client, token, 5, service=journal.identifier)) == older
    journal.rotate()
    assert len(list(journal.directory.glob("*.journal"))) >= 2  # the archived file and the new one
    newer = send_batch(journal, count=5, first=5)
    data = await settled(gw_client, token, 10, service=journal.identifier)
    assert messages(data) == newer + older
    across = await logs(gw_client, token, service=journal.identifier, page=2, page_size=3)
    assert (across["total_count"], messages(across)) == (10, (newer + older)[3:6])
