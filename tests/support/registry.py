"""A real image registry on loopback for tests: Debian's docker-registry (distribution 2.x).

Storage in a private folder, a free port on 127.0.0.1, no auth. Docker treats
registries on 127.0.0.0/8 as insecure (plain HTTP) without being told, so a
hermetic dockerd pulls from it as it is.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from vapor.devenv.processes import free_port

from .processes import terminate

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: vapor-test-registry
"""


class Registry:
    """``docker-registry serve`` on ``127.0.0.1:<port>``; ``address`` is what image names start with."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vreg-"))
        self.port = free_port()
        self.config = self.root / "config.yml"
        self.log_path = self.root / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Registry:
        """Start it and wait until its port accepts connections."""
        self.config.write_text(CONFIG.format(storage=self.root / "storage", port=self.port))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not listen on {self.address} within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop it by its PID and remove its storage."""
        terminate(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
