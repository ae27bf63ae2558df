"""Start a real libvirtd (with virtlogd) when none runs, and stop it again (tests and ``make dev``).

``Libvirtd`` is idempotent: when a libvirtd already answers on the system
socket it is used as it is and left running at the end; otherwise the helper
starts virtlogd and libvirtd as daemons, waits until a connection works, and
at ``stop()`` ends only the processes it started (by their pid files) and
removes their pid files. It also makes /dev/kvm usable by QEMU (group kvm,
mode 0660), as TESTBED.md describes, so domains can use KVM where it exists.

Usable from any test suite::

    with Libvirtd() as daemon:
        conn = libvirt.open(daemon.uri)
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import libvirt  # type: ignore[import-untyped]

SYSTEM_URI = "qemu:///system"
RUN_DIR = Path("/run/libvirt")
PID_FILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}


class LibvirtdError(RuntimeError):
    """libvirtd could not be started or reached."""


def _quiet_errors() -> None:
    # libvirt prints every failed call to stderr by default; tests read errors from exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _answers(uri: str) -> bool:
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def make_kvm_usable() -> bool:
    """Give /dev/kvm to group kvm, mode 0660, so QEMU can open it; whether KVM exists."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return False
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(kvm, -1, grp.getgrnam("kvm").gr_gid)
        os.chmod(kvm, 0o660)
    return True


class Libvirtd:
    """A real libvirtd + virtlogd on this machine, started for tests when none runs."""

    def __init__(self, uri: str = SYSTEM_URI, start_timeout: float = 60.0) -> None:
        self.uri = uri
        self.start_timeout = start_timeout
        self.started: list[str] = []  # daemons this helper started, in start order

    def start(self) -> Libvirtd:
        """Make sure libvirtd answers on ``uri``; start the daemons that are not running."""
        _quiet_errors()
        make_kvm_usable()
        if _answers(self.uri):
            return self
        for daemon in ("virtlogd", "libvirtd"):
            if _pid_alive(PID_FILES[daemon]) is not None:
                continue
            binary = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            subprocess.run([binary, "-d", "-p", str(PID_FILES[daemon])], check=True)
            self.started.append(daemon)
        deadline = time.monotonic() + self.start_timeout
        while not _answers(self.uri):
            if time.monotonic() > deadline:
                raise LibvirtdError(f"libvirtd did not answer on {self.uri} within {self.start_timeout:.0f} s")
            time.sleep(0.1)
        return self

    def clients(self) -> int:
        """How many clients libvirtd serves now (through virt-admin; -1 when that cannot be told)."""
        try:
            out = subprocess.run(
                ["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return -1
        return len([line for line in out.splitlines()[2:] if line.strip()])

    def stop(self) -> None:
        """Stop the daemons this helper started (newest first) and remove their pid files.

        A libvirtd that still serves clients (another test session, an agent
        run by hand) is left running: stopping it would break them.
        """
        if "libvirtd" in self.started and self.clients() != 0:
            self.started.clear()
            return
        for daemon in reversed(self.started):
            pid = _pid_alive(PID_FILES[daemon])
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while _pid_alive(PID_FILES[daemon]) == pid and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _pid_alive(PID_FILES[daemon]) == pid:
                    os.kill(pid, signal.SIGKILL)
            PID_FILES[daemon].unlink(missing_ok=True)
        self.started.clear()

    def kvm_usable(self) -> bool:
        """Whether libvirt offers KVM domains here."""
        conn = libvirt.open(self.uri)
        try:
            return "type='kvm'" in conn.getCapabilities() or 'type="kvm"' in conn.getCapabilities()
        finally:
            conn.close()

    def __enter__(self) -> Libvirtd:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
