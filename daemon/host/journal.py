"""The host's systemd journal, read with systemd-python: a page of a query, and a follower for /ws/logs.

Blocking calls: the node API runs them in a thread. The journal is the
system journal, or ``$VAPOR_JOURNAL_PATH`` (a folder of ``.journal`` files).
systemd-python is imported when a journal is opened, so a host without it
still starts.

Cost of a page: the reader walks the matching entries once, backwards from
``until`` (or the tail), reading only each entry's timestamp to count them;
only the entries of the requested page are read whole.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from typing import Any

from vapor.agentapi.journalquery import DEFAULT_PAGE_SIZE, priority_name, unit_name

JOURNAL_PATH_ENV = "VAPOR_JOURNAL_PATH"  # a folder of .journal files to read instead of the system journal


def journal_path() -> str | None:
    """``$VAPOR_JOURNAL_PATH``, or None for the system journal."""
    return os.environ.get(JOURNAL_PATH_ENV) or None


def entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One entry as the contract shows it: timestamp, priority, unit, message, hostname, pid."""
    stamp = raw.get("__REALTIME_TIMESTAMP")
    unit = raw.get("_SYSTEMD_UNIT") or raw.get("SYSLOG_IDENTIFIER") or ""
    message = raw.get("MESSAGE", "")
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return {
        "timestamp": stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if isinstance(stamp, dt.datetime)
        else None,
        "priority": priority_name(raw.get("PRIORITY")),
        "unit": str(unit).removesuffix(".service"),
        "message": str(message),
        "hostname": raw.get("_HOSTNAME", socket.gethostname()),
        "pid": raw.get("_PID"),
    }


def open_reader(service: str | None, priority: int | None, path: str | None) -> Any:
    """A journal reader of the entries of ``service`` (its unit or its syslog identifier) at ``priority`` or worse."""
    from systemd import journal  # type: ignore[import-untyped]

    reader = journal.Reader(path=path) if path else journal.Reader()
    if service:
        reader.add_match(_SYSTEMD_UNIT=unit_name(service))
        reader.add_disjunction()
        reader.add_match(SYSLOG_IDENTIFIER=service)
        reader.add_conjunction()  # (unit OR identifier) AND priority, not unit OR (identifier AND priority)
    if priority is not None:
        reader.log_level(priority)
    return reader


@dataclass(frozen=True)
class LogQuery:
    """The filters and the page of one request."""

    service: str | None = None
    priority: int | None = None
    since_us: int | None = None  # microseconds since the epoch, inclusive
    until_us: int | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def read_page(query: LogQuery, path: str | None) -> dict[str, Any]:
    """The page of matching entries, newest first, and how many entries match in all."""
    reader = open_reader(query.service, query.priority, path)
    try:
        if query.until_us is not None:
            reader.seek_realtime(dt.datetime.fromtimestamp((query.until_us + 1) / 1_000_000, dt.UTC))
        else:
            reader.seek_tail()
        first = (query.page - 1) * query.page_size
        last = first + query.page_size
        logs: list[dict[str, Any]] = []
        total = 0
        while reader._previous():
            stamp = reader._get_realtime()
            if query.until_us is not None and stamp > query.until_us:
                continue
            if query.since_us is not None and stamp < query.since_us:
                break
            if first <= total < last:
                raw = reader._get_all()
                raw["__REALTIME_TIMESTAMP"] = stamp
                logs.append(entry(reader._convert_entry(raw)))
            total += 1
    finally:
        reader.close()
    return {"logs": logs, "total_count": total, "page": query.page, "page_size": query.page_size}


class JournalFollower:
    """The entries of ``service`` at ``priority`` or worse: the last few, then each new one."""

    def __init__(self, service: str | None, priority: int | None, path: str | None) -> None:
        self.reader = open_reader(service, priority, path)

    def last(self, lines: int) -> list[dict[str, Any]]:
        """The newest ``lines`` matching entries, oldest first; reading goes on after them."""
        found: list[dict[str, Any]] = []
        self.reader.seek_tail()
        for _ in range(lines):
            raw = self.reader.get_previous()
            if not raw:
                break
            found.append(entry(raw))
        found.reverse()
        self.reader.seek_tail()
        self.reader.get_previous()
        return found

    def wait_new(self, timeout: float) -> list[dict[str, Any]]:
        """The entries written since the last read, waiting up to ``timeout`` seconds for a change."""
        # Read on after every wait, whatever it says: entries appended to an open file are visible
        # without a change event, so a missed or merged event costs at most one wait, never an entry.
        self.reader.wait(timeout)
        return [entry(raw) for raw in self.reader]

    def close(self) -> None:
        """Close the journal."""
        self.reader.close()
