"""Structured logs: one JSON object per line (or key=value text), with the fields a call adds.

Call sites pass their fields through ``extra``::

    log.info("domain started", extra={"vm": "ns/web", "domain": uuid})
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        return orjson.dumps(_fields(record), default=str).decode()


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... msg="..." key=value`` lines, for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as key=value pairs."""
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' "=\n'):
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        return " ".join(parts)


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send the process's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Kubernetes client logs every request at DEBUG; keep it to warnings.
    for noisy in ("kubernetes", "urllib3", "aiohttp", "pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
