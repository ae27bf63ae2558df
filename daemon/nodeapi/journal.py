"""``GET /logs`` of the node-local API: a page of this host's systemd journal, newest first.

Query parameters (checked again here, though the gateway validates them
first): ``service`` (a unit; ``sshd`` means ``sshd.service``, and entries
whose ``SYSLOG_IDENTIFIER`` is ``sshd`` match too), ``priority`` (0-7 or a
name, ``emerg`` .. ``debug``: that level and more severe), ``since`` and
``until`` (ISO 8601, or Unix seconds; both inclusive), ``page`` (from 1) and
``page_size`` (1-1000, default 100). The answer is the contract's
``{logs, total_count, page, page_size}``, entries shaped as in /ws/logs.

Cost: the reader walks the matching entries once, backwards from ``until``
(or the tail), reading only each entry's timestamp to count them; only the
entries of the requested page are read whole. The journal read is blocking,
so it runs in a thread. The journal folder is the system journal, or
``$VAPOR_JOURNAL_PATH`` (a folder of ``.journal`` files, as /ws/logs uses).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .context import NodeContext, query_int
from .envelope import INVALID_INPUT, NodeAPIError, ok
from .ws import JOURNAL_PATH_ENV, PRIORITIES, PRIORITY_ALIASES, _entry

log = logging.getLogger("vapor.agent.journal")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE = 10_000_000
UNIT_PATTERN = re.compile(r"^[A-Za-z0-9:_.@\\-]{1,256}$")


@dataclass(frozen=True)
class LogQuery:
    """The filters and the page of one request."""

    service: str | None = None
    priority: int | None = None
    since_us: int | None = None  # microseconds since the epoch, inclusive
    until_us: int | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def parse_priority(text: str) -> int:
    """0-7, or a syslog level name (``emerg``/``emergency`` .. ``debug``)."""
    name = text.strip().lower()
    if name.isdigit() and 0 <= int(name) <= 7:
        return int(name)
    if name in PRIORITIES:
        return PRIORITIES.index(name)
    if name in PRIORITY_ALIASES:
        return PRIORITY_ALIASES[name]
    raise ValueError(f"priority must be 0-7 or one of {', '.join(PRIORITIES)} (got {text[:40]!r})")


def parse_time(text: str) -> int:
    """ISO 8601 (a time without an offset is UTC) or Unix seconds, as microseconds since the epoch."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{1,12}(\.\d{1,6})?", value):
            whole, _, fraction = value.partition(".")
            return int(whole) * 1_000_000 + int(fraction.ljust(6, "0") or 0)
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or Unix seconds: {text[:40]!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1_000_000)


def _query(request: web.Request) -> LogQuery:
    params = request.query
    service = params.get("service") or None
    if service is not None and not UNIT_PATTERN.match(service):
        raise NodeAPIError(400, INVALID_INPUT, "service must be a unit name (letters, digits, : _ . @ \\ -)")
    try:
        priority = parse_priority(params["priority"]) if params.get("priority") else None
        since = parse_time(params["since"]) if params.get("since") else None
        until = parse_time(params["until"]) if params.get("until") else None
    except ValueError as exc:
        raise NodeAPIError(400, INVALID_INPUT, str(exc)) from None
    if since is not None and until is not None and since > until:
        raise NodeAPIError(400, INVALID_INPUT, "since must not be after until")
    return LogQuery(
        service=service,
        priority=priority,
        since_us=since,
        until_us=until,
        page=query_int(request, "page", 1, low=1, high=MAX_PAGE),
        page_size=query_int(request, "page_size", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
    )


def read_page(query: LogQuery, path: str | None) -> dict[str, Any]:
    """The page of matching entries, newest first, and how many entries match in all (blocking)."""
    from systemd import journal  # type: ignore[import-untyped]  # imported late: hosts without it still start

    reader = journal.Reader(path=path) if path else journal.Reader()
    try:
        if query.service:
            name = query.service if "." in query.service else f"{query.service}.service"
            reader.add_match(_SYSTEMD_UNIT=name)
            reader.add_disjunction()
            reader.add_match(SYSLOG_IDENTIFIER=query.service)
            reader.add_conjunction()  # (unit OR identifier) AND priority, not unit OR (identifier AND priority)
        if query.priority is not None:
            reader.log_level(query.priority)
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
                logs.append(_entry(reader._convert_entry(raw)))
            total += 1
    finally:
        reader.close()
    return {"logs": logs, "total_count": total, "page": query.page, "page_size": query.page_size}


def routes(node: NodeContext) -> list[web.RouteDef]:
    """``GET /logs``."""

    async def get_logs(request: web.Request) -> web.Response:
        query = _query(request)
        path = os.environ.get(JOURNAL_PATH_ENV) or None
        try:
            data = await asyncio.to_thread(read_page, query, path)
        except (ImportError, OSError) as exc:
            log.warning("journal unreadable", extra={"error": str(exc), "path": path})
            raise NodeAPIError(500, "INTERNAL_ERROR", "the journal cannot be read", str(exc)) from None
        log.debug("logs read", extra={"total": data["total_count"], "page": query.page})
        return ok(data)

    return [web.get("/logs", get_logs)]
