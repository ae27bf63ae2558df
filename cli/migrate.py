"""``vaporctl migrate VM --to HOST`` and ``vaporctl follow MIGRATION``: a migration's progress, live until it ends.

On a terminal a Rich progress bar shows the percent copied and the data
remaining; piped, one line is printed per change of phase or percent. The
exit code is 0 only when the migration Succeeded. Ctrl-C asks whether to
cancel the migration (POST /migrations/{id}/cancel) or leave it running.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .client import Client
from .errors import APIFailure, CLIError
from .names import vm_ref
from .output import size, stdout
from .power import VMArgument
from .session import NamespaceOption, client

TERMINAL = ("Succeeded", "Failed", "Cancelled")
POLL_SECONDS = 1.0  # 60 requests a minute: within the gateway's 100 per client address, with room for others
BUSY_SECONDS = 5.0  # the wait after the gateway's RATE_LIMITED, before asking again


def _remaining(m: dict[str, Any]) -> str:
    progress = m.get("progress") or {}
    left = progress.get("data_remaining")
    return f"{size(left)} remaining" if left is not None else ""


def _percent(m: dict[str, Any]) -> int:
    if m["phase"] == "Succeeded":
        return 100
    return int((m.get("progress") or {}).get("percent") or 0)


class Watch:
    """The display of one migration: a live bar on a terminal, else a line per change."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.live = stdout.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[remaining]}"),
            TimeElapsedColumn(),
            console=stdout,
        )
        self.task = self.progress.add_task(title, total=100, remaining="")
        self.last: tuple[str, int, str] | None = None

    def show(self, m: dict[str, Any]) -> None:
        """Show the migration's phase, percent and data remaining."""
        shown = (m["phase"], _percent(m), _remaining(m))
        if self.live:
            self.progress.update(
                self.task, completed=shown[1], description=f"{self.title} {shown[0]}", remaining=shown[2]
            )
        elif shown != self.last:
            stdout.print(f"{self.title} {shown[0]} {shown[1]}% {shown[2]}".rstrip(), highlight=False)
        self.last = shown

    def __enter__(self) -> Watch:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()


def _ask_to_cancel(api: Client, m: dict[str, Any], watch: Watch) -> None:
    """After Ctrl-C: cancel the migration and watch on, or leave it running and stop watching."""
    watch.__exit__()
    try:
        cancel = typer.confirm(f"Cancel migration {m['namespace']}/{m['name']}?", default=False)
    except (KeyboardInterrupt, typer.Abort, EOFError):
        cancel = False
    if not cancel:
        raise CLIError(
            f"stopped watching; migration {m['namespace']}/{m['name']} goes on "
            f"(vaporctl follow {m['namespace']}/{m['name']})",
            130,
        )
    api.post(f"/migrations/{m['id']}/cancel", {"reason": "cancelled with Ctrl-C in vaporctl"})
    print(f"Cancel requested for migration {m['namespace']}/{m['name']}.", flush=True)
    watch.__enter__()


def _poll(api: Client, m: dict[str, Any]) -> dict[str, Any]:
    """The migration now; the last answer again while the gateway says to slow down."""
    try:
        return dict(api.get(f"/migrations/{m['id']}"))
    except APIFailure as exc:
        if exc.status != 429:
            raise
        time.sleep(BUSY_SECONDS)
        return m


def follow_migration(api: Client, ident: str, namespace: str) -> None:
    """Show the migration until it ends; CLIError unless it Succeeded."""
    path = f"/migrations/{quote(ident, safe='')}"
    m = api.get(path, namespace=namespace)
    watch = Watch(f"{m['namespace']}/{m['name']}")
    with watch:
        while True:
            try:
                watch.show(m)
                if m["phase"] in TERMINAL:
                    break
                time.sleep(POLL_SECONDS)
                m = _poll(api, m)
            except KeyboardInterrupt:
                _ask_to_cancel(api, m, watch)
    name = f"{m['namespace']}/{m['name']}"
    if m["phase"] == "Succeeded":
        downtime = f", downtime {m['downtime_ms']} ms" if m.get("downtime_ms") is not None else ""
        print(f"Migration {name} succeeded: {m['vm_name']} runs on {m.get('destination_host_name')}{downtime}.")
        return
    reason = f": {m['failure_reason']}" if m.get("failure_reason") else ""
    raise CLIError(f"migration {name} {m['phase'].lower()}{reason}")


def migrate(
    ctx: typer.Context,
    vm: VMArgument,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Destination host, by name or id (default: the operator picks one).",
                     show_default=False),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Move it stopped instead of live.")] = False,
    copy_storage: Annotated[
        bool, typer.Option("--copy-storage", help="Copy the disks too (they are not on storage both hosts share).")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start it and return at once.")] = False,
    namespace: NamespaceOption = None,
) -> None:  # fmt: skip
    """Move a VM to another host (admin), showing its progress live until it ends.

    Exit code 0 when it Succeeded, 1 when it Failed or was Cancelled. Ctrl-C
    asks whether to cancel it.
    """
    ref = vm_ref(vm, namespace)
    body: dict[str, Any] = {"live": not offline, "copy_storage": "all" if copy_storage else "none"}
    if to is not None:
        body["destination_host_id"] = to
    with client(ctx) as api:
        started = api.post(f"{ref.path}/migrate", body, namespace=ref.namespace)
        print(f"Migration {started['namespace']}/{started['name']} of {started['vm_name']} started.", flush=True)
        if not detach:
            follow_migration(api, started["migration_id"], started["namespace"])


def follow(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="NAME (with -n), NAMESPACE/NAME, or the migration's id.")],
    namespace: NamespaceOption = None,
) -> None:
    """Follow a migration (started elsewhere, or left with Ctrl-C) until it ends, as migrate does."""
    ref = vm_ref(migration, namespace)
    with client(ctx) as api:
        follow_migration(api, ref.ident, ref.namespace)
