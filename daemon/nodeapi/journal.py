"""``GET /logs`` of the node-local API: a page of this host's systemd journal, newest first.

The query (``service``, ``priority``, ``since``, ``until``, ``page``,
``page_size``) follows :mod:`vapor.agentapi.journalquery`, checked again here
though the gateway checks it first. The answer is the contract's
``{logs, total_count, page, page_size}``, entries shaped as in /ws/logs; the
journal is read in a thread (:func:`..host.journal.read_page`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from vapor.agentapi.errors import INTERNAL_ERROR, INVALID_INPUT
from vapor.agentapi.journalquery import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    SERVICE_RE,
    epoch_us,
    parse_priority,
    parse_time,
)

from ..host.journal import LogQuery, journal_path, read_page
from .context import NodeContext, query_int
from .envelope import NodeAPIError, ok

log = logging.getLogger("vapor.agent.journal")


def _query(request: web.Request) -> LogQuery:
    params = request.query
    service = params.get("service") or None
    if service is not None and not SERVICE_RE.match(service):
        raise NodeAPIError(400, INVALID_INPUT, "service must be a unit name (letters, digits, : _ . @ \\ -)")
    try:
        priority = parse_priority(params["priority"]) if params.get("priority") else None
    except ValueError as exc:
        raise NodeAPIError(400, INVALID_INPUT, f"priority {exc} (got {params['priority'][:40]!r})") from None
    times: dict[str, int | None] = {"since": None, "until": None}
    for name in times:
        if text := params.get(name):
            try:
                times[name] = epoch_us(parse_time(text))
            except ValueError as exc:
                raise NodeAPIError(400, INVALID_INPUT, f"{name} {exc} (got {text[:40]!r})") from None
    since, until = times["since"], times["until"]
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


def routes(node: NodeContext) -> list[web.RouteDef]:
    """``GET /logs``."""

    async def get_logs(request: web.Request) -> web.Response:
        query = _query(request)
        path = journal_path()
        try:
            data = await asyncio.to_thread(read_page, query, path)
        except (ImportError, OSError) as exc:
            log.warning("journal unreadable", extra={"error": str(exc), "path": path})
            raise NodeAPIError(500, INTERNAL_ERROR, "the journal cannot be read", str(exc)) from None
        log.debug("logs read", extra={"total": data["total_count"], "page": query.page})
        return ok(data)

    return [web.get("/logs", get_logs)]
