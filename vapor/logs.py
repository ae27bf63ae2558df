"""One log format for the operator, the agent and the gateway: structured lines on stderr.

Every line has the same keys, ``ts`` (UTC, RFC 3339 with milliseconds),
``level``, ``logger`` and ``msg``, then the fields the call passed through
``extra``, and ``error`` with the traceback of a logged exception::

    log.info("domain started", extra={"vm": "ns/web", "domain": uuid})

Two renderings of those keys: ``json``, one object a line for log shippers
(the default), and ``logfmt``, ``key=value`` pairs for people reading a
terminal (``text`` is accepted as its old name). Each component takes
``--log-format`` and ``$VAPOR_LOG_FORMAT``. Records of kopf about a
Kubernetes object get the field ``object`` (``Kind namespace/name``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("json", "logfmt", "text")  # text: logfmt's old name
FORMAT_ENV = "VAPOR_LOG_FORMAT"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# What kopf's object loggers add: its settings and skip flag are not for a log line; its reference is.
_KOPF = {"settings", "k8s_skip", "k8s_ref"}


def _object(ref: Any) -> str:
    """Kopf's object reference as ``Kind namespace/name``."""
    if not isinstance(ref, dict):
        return str(ref)
    where = "/".join(part for part in (ref.get("namespace"), ref.get("name")) if part)
    return f"{ref.get('kind') or 'object'} {where}"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The keys of one log line, in their order."""
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extra = record.__dict__
    if "k8s_ref" in extra:
        line["object"] = _object(extra["k8s_ref"])
    line.update({k: v for k, v in extra.items() if k not in _STANDARD and k not in _KOPF and k not in line})
    if record.exc_info:
        line["error"] = logging.Formatter().formatException(record.exc_info)
    return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        return orjson.dumps(fields(record), default=str).decode()


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value`` lines: values with spaces, quotes or ``=`` are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as key=value pairs."""
        parts = []
        for key, value in fields(record).items():
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            if not text or any(c in text for c in ' "=\n\\'):
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        return " ".join(parts)


def add_format_flag(parser: argparse.ArgumentParser) -> None:
    """``--log-format``, defaulting to $VAPOR_LOG_FORMAT, else json."""
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get(FORMAT_ENV) or "json",
        help=f"json (one object a line, the default) or logfmt (key=value; 'text' too) (default ${FORMAT_ENV})",
    )


def setup_logging(level: str | int = "INFO", fmt: str = "json") -> None:
    """Send every log of the process (the libraries' too) to stderr in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # The Kubernetes client logs every request at DEBUG; keep it to warnings.
    for noisy in ("kubernetes", "urllib3", "aiohttp", "pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
