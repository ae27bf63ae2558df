"""How vaporctl prints: kubectl-like tables (Rich), JSON or YAML of the API's objects, ages and sizes."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

# Piped output is never wrapped or cut: scripts read whole lines.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 10_000)
stderr = Console(stderr=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as kubectl prints them: upper-case headers, no borders, left aligned."""
    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for header in headers:
        grid.add_column(header, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*row)
    stdout.print(grid)


def dump(data: Any, fmt: str) -> None:
    """``data`` as JSON or YAML on stdout."""
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")


def age(created: str | None, now: dt.datetime | None = None) -> str:
    """The age of an object as kubectl shows it: 45s, 12m, 5h, 3d."""
    if not created:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(0, seconds)}s"


def size(value: int | None) -> str:
    """Bytes in binary units: 512Mi, 1.5Gi."""
    if value is None:
        return "<none>"
    amount = float(value)
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if amount < 1024 or unit == "Pi":
            if unit == "" or amount >= 100:
                return f"{amount:.0f}{unit}"
            return f"{amount:.1f}".rstrip("0").rstrip(".") + unit
        amount /= 1024
    return str(value)


def text(value: Any) -> str:
    """A table cell: <none> for nothing."""
    if value is None or value == "" or value == []:
        return "<none>"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
