"""What a query of a host's systemd journal may ask (``GET /logs``, ``/ws/logs``): checked alike at both ends.

The gateway checks the query before it asks the agent, and the agent checks
it again before it reads the journal:

- ``service``: a systemd unit name (``sshd`` means ``sshd.service``); entries
  logged under that syslog identifier match too.
- ``priority``: syslog's level 0-7 by number or name (that level and more
  severe). Entries show the long names of :data:`PRIORITY_NAMES`.
- ``since`` / ``until``: ISO 8601 (UTC when no offset is given) or Unix
  seconds, 1970 or later; both inclusive.
- ``page`` from 1, ``page_size`` 1 to :data:`MAX_PAGE_SIZE`.
"""

from __future__ import annotations

import datetime as dt
import re

# Syslog's levels, most severe first: the index is the journal's PRIORITY.
PRIORITY_NAMES = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
SYSLOG_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")  # syslog's own spelling
_LEVELS = {**{name: level for level, name in enumerate(SYSLOG_NAMES)}, "warn": 4}
_LEVELS.update({name: level for level, name in enumerate(PRIORITY_NAMES)})
PRIORITY_HELP = (
    "0-7 or one of emerg, alert, crit, err, warning, notice, info, debug (or emergency, critical, error, warn)"
)

SERVICE_PATTERN = r"^[A-Za-z0-9:_.@\\-]{1,256}$"
SERVICE_RE = re.compile(SERVICE_PATTERN)
TIME_HELP = "ISO 8601 (UTC when no offset is given) or Unix seconds; inclusive."
_UNIX_SECONDS = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE = 10_000_000


def parse_priority(value: str | int) -> int:
    """The journal's PRIORITY of a level given by number (0-7, or its digit) or name; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 7:
            return value
    elif isinstance(value, str):
        name = value.strip().lower()
        if re.fullmatch(r"[0-7]", name):
            return int(name)
        if name in _LEVELS:
            return _LEVELS[name]
    raise ValueError(f"must be {PRIORITY_HELP}")


def priority_name(level: object) -> str:
    """How an entry shows its PRIORITY (an entry without one, or with one out of range, is ``info``)."""
    return PRIORITY_NAMES[level] if isinstance(level, int) and 0 <= level <= 7 else "info"


def parse_time(text: str) -> dt.datetime:
    """A query's time in UTC, to the microsecond; ValueError when it is neither form, or before 1970."""
    value = text.strip()
    try:
        if seconds := _UNIX_SECONDS.match(value):
            whole, fraction = seconds.groups()
            stamp = _EPOCH + dt.timedelta(seconds=int(whole), microseconds=int((fraction or "").ljust(6, "0")))
        else:
            stamp = dt.datetime.fromisoformat(value)
            stamp = stamp.astimezone(dt.UTC) if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 time (1970 or later) or Unix seconds") from None
    if stamp < _EPOCH:
        raise ValueError("must be an ISO 8601 time (1970 or later) or Unix seconds")
    return stamp


def epoch_us(stamp: dt.datetime) -> int:
    """Microseconds since 1970 (the journal's realtime clock)."""
    return (stamp - _EPOCH) // dt.timedelta(microseconds=1)


def unit_name(service: str) -> str:
    """The unit a service names: ``sshd`` is ``sshd.service``; a name with a suffix stays as it is."""
    return service if "." in service else f"{service}.service"
