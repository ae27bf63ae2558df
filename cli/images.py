"""``vaporctl image upload FILE --name N``: an upload Image's bytes, streamed to one host with a progress bar.

The file is read in chunks as the request body goes out (never whole into
memory) with its length announced, through PUT /api/v1/images/{name}/upload.
The Image is created first (source upload, format from --format or the
file's first bytes) when it does not exist yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .client import Client
from .errors import USAGE_ERROR, APIFailure, CLIError
from .output import size, stdout
from .session import client

CHUNK = 1 << 20
QCOW2_MAGIC = b"QFI\xfb"
ISO_MAGIC_OFFSET, ISO_MAGIC = 0x8001, b"CD001"

app = typer.Typer(help="Disk images the hosts keep and VMs boot from.", no_args_is_help=True)


def guess_format(path: Path) -> str:
    """qcow2 or iso by the file's magic bytes, else raw."""
    with path.open("rb") as f:
        if f.read(4) == QCOW2_MAGIC:
            return "qcow2"
        f.seek(ISO_MAGIC_OFFSET)
        return "iso" if f.read(5) == ISO_MAGIC else "raw"


def _chunks(path: Path, progress: Progress, task: Any, per_tenth: list[int]) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            progress.update(task, advance=len(block))
            if not stdout.is_terminal:
                done = int(progress.tasks[0].completed)
                tenth = done * 10 // max(1, int(progress.tasks[0].total or 1))
                if tenth > per_tenth[0]:
                    per_tenth[0] = tenth
                    stdout.print(f"uploaded {size(done)} ({tenth * 10}%)", highlight=False)
            yield block


def _ensure_image(api: Client, name: str, fmt: str) -> None:
    try:
        api.get(f"/images/{quote(name, safe='')}")
    except APIFailure as exc:
        if exc.status != 404:
            raise
        api.post("/images", {"name": name, "source": {"upload": {}}, "format": fmt})
        print(f"Image {name} created (format {fmt}).", flush=True)


@app.command()
def upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The image file (qcow2, raw or iso).", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Name of the Image (created when it does not exist).")],
    host: Annotated[
        str | None, typer.Option("--host", help="Host to put it on (default: the gateway's default host).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="qcow2, raw or iso (default: from the file's first bytes).")
    ] = None,
) -> None:
    """Upload an image file to a host (admin), with a progress bar; the host verifies it before VMs use it."""
    if not file.is_file():
        raise CLIError(f"{file} is not a file", USAGE_ERROR)
    length = file.stat().st_size
    with client(ctx) as api:
        _ensure_image(api, name, fmt or guess_format(file))
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=stdout, disable=not stdout.is_terminal,
        )  # fmt: skip
        task = progress.add_task(f"{file.name} -> {name}", total=length)
        with progress:
            result = api.put_stream(
                f"/images/{quote(name, safe='')}/upload", _chunks(file, progress, task, [0]), length, host=host
            )
    print(
        f"Image {name}: {size(result['size'])} uploaded to host {result['host']} and verified "
        f"(format {result['format']}, sha256 {result['sha256']})."
    )
