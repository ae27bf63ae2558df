"""``vaporctl console VM``: the VM's serial console in this terminal, raw, until Ctrl-] (or the server ends it).

The terminal is put in raw mode (every key goes to the guest, Ctrl-C
included) and restored however the session ends. Window size changes are
sent as resize messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .errors import CLIError
from .names import vm_ref
from .power import VMArgument
from .session import NamespaceOption, client
from .sockets import control, open_session, refusal

ESCAPE = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ``fd`` while the block runs, when it is a terminal; the old mode back afterwards, always."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Pump:
    """The server's side of a session: its bytes to stdout, and why it ended."""

    def __init__(self, ws: ClientConnection, wake: int) -> None:
        self.ws = ws
        self.wake = wake
        self.error: dict[str, Any] | None = None
        self.closed: ConnectionClosed | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        out = sys.stdout.fileno()
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    _write_all(out, message)
                elif control(message).get("type") == "error":
                    self.error = control(message)
        except ConnectionClosed as exc:
            self.closed = exc
        finally:
            os.write(self.wake, b"x")

    def failure(self) -> CLIError | None:
        """Why the server ended it, unless it ended cleanly."""
        closed = self.closed
        if self.error is None and (closed is None or closed.rcvd is None or closed.rcvd.code in (1000, 1001)):
            return None
        return refusal(self.error, closed)


def _resize(ws: ClientConnection) -> None:
    now = shutil.get_terminal_size()
    ws.send(json.dumps({"type": "resize", "cols": now.columns, "rows": now.lines}))


def _send_keys(ws: ClientConnection, fd: int, wake: int, winch: int) -> None:
    """Keys to the guest until Ctrl-] or the server's end; stdin's end only stops the keys.

    A window size change arrives as a byte on ``winch`` (the signal handler
    only writes it: sending from the handler could meet a send in progress).
    """
    sources = [fd, wake, winch]
    while True:
        ready, _, _ = select.select(sources, [], [])
        if wake in ready:
            return
        if winch in ready:
            os.read(winch, 64)
            _resize(ws)
        if fd not in ready:
            continue
        data = os.read(fd, 4096)
        if not data:
            sources = [wake, winch]  # piped input ran out: show the output until the server ends
            continue
        before, escape, _ = data.partition(ESCAPE)
        if before:
            ws.send(before)
        if escape:
            return


def console(
    ctx: typer.Context,
    vm: VMArgument,
    force: Annotated[bool, typer.Option("--force", help="Take the console over from another session.")] = False,
    namespace: NamespaceOption = None,
) -> None:
    """Open a VM's serial console (admin): a raw terminal, Ctrl-] to leave."""
    ref = vm_ref(vm, namespace)
    size = shutil.get_terminal_size()
    with client(ctx) as api:
        ws = open_session(api, ref, "console", force=force, cols=size.columns, rows=size.lines)
    print(f"Connected to the serial console of {ref}; escape with Ctrl-]", file=sys.stderr, flush=True)
    wake_read, wake_write = os.pipe()
    winch_read, winch_write = os.pipe()
    os.set_blocking(winch_write, False)
    pump = Pump(ws, wake_write)

    def resized(*_: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(winch_write, b"w")

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        with raw_terminal(sys.stdin.fileno()):
            pump.thread.start()
            with contextlib.suppress(ConnectionClosed):
                _send_keys(ws, sys.stdin.fileno(), wake_read, winch_read)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        ws.close()
        pump.thread.join(timeout=5)
        for fd in (wake_read, wake_write, winch_read, winch_write):
            os.close(fd)
    failure = pump.failure()
    if failure is not None:
        print(file=sys.stderr)
        raise failure
    print("\nDisconnected.", file=sys.stderr)
