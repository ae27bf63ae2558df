"""Every frame an interface of a test's network namespace carries, as one byte string (no tcpdump needed).

``Capture(netns, "br0")`` runs a small AF_PACKET reader under ``ip netns exec``
(so only that namespace's traffic is seen, never the machine's) that appends
each frame to a file until ``stop()``; ``data()`` reads them all back. Used to
check what a migration sends on the wire.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

_READER = """
import signal, socket, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
out = open(sys.argv[2], "wb", buffering=1 << 20)
print("ready", flush=True)
try:
    while True:
        out.write(s.recv(65536))
finally:
    out.close()
"""


class Capture:
    """Frames of ``iface`` in ``netns`` while running; a context manager."""

    def __init__(self, netns: str, iface: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", _READER, iface, str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"capture did not start: {self.process.stderr.read() if self.process.stderr else ''!r}")

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop reading (idempotent); the frames stay in the file."""
        if self.process.poll() is None:
            time.sleep(0.2)  # the last frames in flight
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def data(self) -> bytes:
        """Every byte captured so far."""
        return self.out.read_bytes() if self.out.exists() else b""
