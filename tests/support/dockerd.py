"""A real, hermetic Docker engine for tests, and tiny images made without a registry.

``Dockerd`` starts ``dockerd`` with its own data root, exec root, socket and
pidfile, and without touching the machine's networking (no bridge, no
iptables, no masquerade), so several can run beside each other and beside a
Docker the machine may have. ``stop()`` ends it by its PID, removes what it
left mounted under its folder (the default netns mount, overlay mounts) and
the folder itself.

``busybox_rootfs()`` (vapor.devenv.images) is a tar of busybox-static with a few
applet links (about 2 MB); ``Dockerd.import_image`` turns it into an image with ``docker import``
semantics (the Docker SDK's ``import_image_from_data``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path

import docker

from vapor.devenv.images import busybox_rootfs
from vapor.devenv.leftovers import unmount_all_under

from .processes import log_tail


class DockerdError(RuntimeError):
    """dockerd did not start."""


class Dockerd:
    """One hermetic dockerd; ``base_url`` is what the agent's ``--docker-host`` takes."""

    def __init__(self, extra_args: list[str] | None = None) -> None:
        # A short folder under /tmp: the socket paths inside must stay under the 108-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix="vd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.log_path = self.root / "dockerd.log"
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``unix://<socket>``."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> Dockerd:
        """Start dockerd and wait until it answers a ping (and clean up if it does not)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Dockerd:
        args = [
            "dockerd",
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "x"),
            "-H", self.base_url,
            "--pidfile", str(self.pidfile),
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerdError(f"dockerd exited with {self.proc.returncode}:\n{self.tail()}")
            if self.socket.exists():
                try:
                    with closing(self.client()) as client:
                        client.ping()
                    return self
                except docker.errors.DockerException:
                    pass
            time.sleep(0.1)
        raise DockerdError(f"dockerd did not answer within {timeout:.0f}s:\n{self.tail()}")

    def client(self) -> docker.DockerClient:
        """A Docker SDK client of this daemon (close it: ``with closing(dockerd.client())``)."""
        return docker.DockerClient(base_url=self.base_url, timeout=60)

    def import_image(self, repository: str, tag: str = "1", cmd: list[str] | None = None) -> str:
        """Make ``repository:tag`` from the busybox rootfs (``docker import``); its reference."""
        changes = [f"CMD {list(cmd)!r}".replace("'", '"')] if cmd else None
        with closing(self.client()) as client:
            client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag, changes=changes)
        return f"{repository}:{tag}"

    def stop(self) -> None:
        """Stop dockerd by its PID (SIGKILL after 20 s), unmount what it left, remove its folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        unmount_all_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        """The end of dockerd's log."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
