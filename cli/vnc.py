"""``vaporctl vnc VM``: a local port on 127.0.0.1 whose every connection is relayed to the VM's display.

Each VNC viewer that connects gets its own WebSocket to /ws/vms/{id}/vnc
(one session at a time per VM: a second viewer needs --force, and takes the
display over). The port listens on the loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from typing import Annotated

import typer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .client import Client
from .errors import CLIError
from .names import VMRef, vm_ref
from .power import VMArgument
from .session import NamespaceOption, client
from .sockets import control, open_session, refusal


def _to_viewer(ws: ClientConnection, conn: socket.socket) -> None:
    error = None
    try:
        for message in ws:
            if isinstance(message, bytes):
                conn.sendall(message)
            elif control(message).get("type") == "error":
                error = control(message)
    except ConnectionClosed as exc:
        if error is not None or (exc.rcvd is not None and exc.rcvd.code not in (1000, 1001)):
            print(f"error: {refusal(error, exc).message}", file=sys.stderr, flush=True)
    except OSError:
        pass  # the viewer went away
    finally:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)


def _relay(api: Client, ref: VMRef, conn: socket.socket, force: bool) -> None:
    with conn:
        try:
            ws = open_session(api, ref, "vnc", force=force)
        except CLIError as exc:
            print(f"error: {exc.message}", file=sys.stderr, flush=True)
            return
        back = threading.Thread(target=_to_viewer, args=(ws, conn), daemon=True)
        back.start()
        try:
            while data := conn.recv(65536):
                ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            ws.close()
            back.join(timeout=5)


def vnc(
    ctx: typer.Context,
    vm: VMArgument,
    port: Annotated[int, typer.Option("--port", help="Local port (0: any free one).", min=0, max=65535)] = 0,
    force: Annotated[bool, typer.Option("--force", help="Take the display over from another session.")] = False,
    namespace: NamespaceOption = None,
) -> None:
    """Relay a local port (127.0.0.1) to a VM's display (admin), for a VNC viewer; Ctrl-C to stop."""
    ref = vm_ref(vm, namespace)
    with client(ctx) as api:
        view = api.get(ref.path, namespace=ref.namespace)
        if view.get("phase") not in ("Running", "Paused"):
            raise CLIError(f"vm {view['namespace']}/{view['name']} is not running ({view['status']}); start it first")
        listener = socket.create_server(("127.0.0.1", port))
        bound = listener.getsockname()[1]
        print(
            f"Forwarding 127.0.0.1:{bound} to the display of {ref}: point a VNC viewer at it "
            f"(vncviewer 127.0.0.1::{bound}); Ctrl-C to stop.",
            flush=True,
        )
        try:
            with listener:
                while True:
                    conn, _ = listener.accept()
                    threading.Thread(target=_relay, args=(api, ref, conn, force), daemon=True).start()
        except KeyboardInterrupt:
            print("Stopped.", file=sys.stderr)
