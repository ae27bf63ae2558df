"""A loopback HTTP server of one file, for image download tests: Range requests and failure knobs."""

from __future__ import annotations

import contextlib
import http.server
import re
import socketserver
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ServedRequest:
    """One request the server answered: method, path, Range header, status, body bytes sent."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0


class ImageServer:
    """Serves ``file`` at ``/<name>`` on 127.0.0.1 (Range and HEAD supported); a context manager.

    Knobs, changeable at any time (they apply to the next responses):

    - ``cut_after(n, times=1)``: the next ``times`` responses close the
      connection after ``n`` body bytes (a download that breaks half-way);
    - ``missing = True``: 404 for every request;
    - ``corrupt = True``: same length, wrong bytes (the checksum fails);
    - ``rate = bytes_per_second``: a slow server (None: as fast as it goes).

    ``requests`` lists what was asked, for assertions (e.g. that a retry
    asked for a Range).
    """

    def __init__(self, file: Path, name: str | None = None, host: str = "127.0.0.1") -> None:
        self.file = file
        self.name = name or file.name
        self.size = file.stat().st_size
        self.missing = False
        self.corrupt = False
        self.rate: int | None = None
        self.requests: list[ServedRequest] = []
        self._cuts: list[int] = []
        self._lock = threading.Lock()
        self._server = _Server((host, 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="image-server", daemon=True)

    @property
    def url(self) -> str:
        """The file's URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.name}"

    def cut_after(self, n: int, times: int = 1) -> None:
        """Close the next ``times`` responses after ``n`` bytes of body."""
        with self._lock:
            self._cuts = [n] * times

    def _next_cut(self) -> int | None:
        with self._lock:
            return self._cuts.pop(0) if self._cuts else None

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _handler(server: ImageServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            record = ServedRequest(self.command, self.path, self.headers.get("Range"), 200)
            server.requests.append(record)
            if server.missing or self.path.split("?")[0] != f"/{server.name}":
                record.status = 404
                self.send_error(404)
                return
            first, last = 0, server.size - 1
            wanted = record.range
            if wanted:
                m = _RANGE.match(wanted.strip())
                if m is None or (not m.group(1) and not m.group(2)):
                    record.status = 416
                    self._unsatisfiable()
                    return
                if m.group(1):
                    first = int(m.group(1))
                    last = min(int(m.group(2)), server.size - 1) if m.group(2) else server.size - 1
                else:  # the last N bytes
                    first = max(server.size - int(m.group(2)), 0)
                if first >= server.size or first > last:
                    record.status = 416
                    self._unsatisfiable()
                    return
                record.status = 206
            length = last - first + 1
            self.send_response(record.status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{server.size:x}"')
            if record.status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{server.size}")
            self.end_headers()
            if body:
                self._send(record, first, length)

        def _unsatisfiable(self) -> None:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{server.size}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, record: ServedRequest, first: int, length: int) -> None:
            cut = server._next_cut()
            limit = length if cut is None else min(cut, length)
            started = time.monotonic()
            with server.file.open("rb") as f:
                f.seek(first)
                while record.sent < limit:
                    chunk = f.read(min(1 << 16, limit - record.sent))
                    if not chunk:
                        break
                    if server.corrupt:
                        chunk = bytes(b ^ 0xFF for b in chunk)
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        return
                    record.sent += len(chunk)
                    if server.rate:
                        ahead = record.sent / server.rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            if record.sent < length:  # cut: the client sees the connection end early
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.wfile.flush()
                    self.connection.shutdown(2)

    return Handler
