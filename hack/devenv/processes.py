"""Vapor's components as child processes: started, logged, stopped (tests and ``make dev``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


def alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spawn(argv: list[str], log: Path, *, detach: bool, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a program with its output appended to ``log``; ``detach`` puts it in its own session."""
    with log.open("ab") as logfile:
        return subprocess.Popen(
            argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach, cwd=cwd
        )


def terminate(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; ``proc`` (our child) is reaped. False if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (proc.poll() is not None) if proc is not None else not alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    if proc is not None:
        proc.wait(timeout=10)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Component:
    """``python -m <module> <args>`` in its own process group.

    Its output goes to ``log``; with ``echo`` each line is also printed with
    the component's name in front, as ``make dev`` shows them.
    """

    def __init__(
        self, module: str, args: list[str], log: Path, env: dict[str, str] | None = None, *, echo: str | None = None
    ) -> None:
        self.module = module
        self.args = args
        self.log_path = log
        self.env = {**os.environ, **(env or {})}
        self.echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> Component:
        """Start it (again)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out: IO[bytes] | int = self.log_path.open("ab") if not self.echo else subprocess.PIPE
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        if self.echo:
            self._pump = threading.Thread(target=self._copy, daemon=True)
            self._pump.start()
        elif not isinstance(out, int):
            out.close()
        return self

    def _copy(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as logfile:
            for line in self.proc.stdout:
                logfile.write(line)
                logfile.flush()
                sys.stdout.write(f"{self.echo:>9} | {line.decode(errors='replace')}")
                sys.stdout.flush()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop it (SIGKILL after ``timeout``); ``sig=signal.SIGKILL`` simulates a crash. The exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self._pump:
            self._pump.join(timeout=2)
        return self.proc.returncode

    def kill(self) -> None:
        """End it at once, as a crash would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Component:
        """Stop it gracefully and start it again."""
        self.stop()
        return self.start()

    def __enter__(self) -> Component:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
