"""A PTY terminal for one user: the session program (.session) on a PTY, which runs the login shell.

The agent checks what it can tell the client clearly before a terminal
opens (``refusal``: no such user, root, no login shell; the PAM account
stage through ``standing``), then forks on a new PTY and execs ``python -m
vapor.agent.host.session``: PAM's account and session stages on the node, the
account's own shell from the node's passwd (chrooted into the node's root
with ``--host-root``), and the end of every process of the session when the
shell ends. ``close`` hangs the session up (SIGHUP), gives the session
program CLOSE_GRACE to close the PAM session, then kills it and whatever is
left in its session.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .session import end_session, shell_refusal

CLOSE_GRACE = 5.0  # seconds the session program has to end after a hang-up
SESSION_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class TerminalError(Exception):
    """The shell cannot be started (unknown user, a shell not in /etc/shells)."""


@dataclass(frozen=True)
class LoginAccount:
    """The user a shell runs as, as the node's root describes them (``login_account``)."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    shells: tuple[str, ...]

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> LoginAccount:
        """The account as the host root's worker answered it (a JSON object)."""
        return cls(**{**found, "shells": tuple(found["shells"])})

    def refusal(self, *, allow_root: bool) -> str | None:
        """Why this account gets no terminal (None: it may have one, if PAM agrees)."""
        if self.uid == 0 and not allow_root:
            return f"{self.name!r} has uid 0: root gets no terminal through Vapor (the agent's --terminal-allow-root)"
        return shell_refusal(self.shell, self.shells)


@dataclass
class Terminal:
    """A running session program on a PTY: ``fd`` is the master side, ``pid`` the program (its session's id)."""

    pid: int
    fd: int

    @classmethod
    def open(
        cls,
        account: LoginAccount,
        *,
        service: str,
        root: Path | None = None,
        allow_root: bool = False,
        cols: int = 80,
        rows: int = 24,
    ) -> Terminal:
        """Start the session program for ``account`` on a new PTY of ``cols`` x ``rows``."""
        argv = [sys.executable, "-m", "vapor.agent.host.session", "--service", service, "--user", account.name]
        if root is not None:  # the node's root (HostRoot.chroot), when it is not the agent's own
            argv += ["--root", str(root)]
        if allow_root:
            argv.append("--allow-root")
        pid, fd = pty.fork()
        if pid == 0:  # the child: only exec (the agent has threads; nothing else is safe here)
            try:
                os.execve(sys.executable, argv, SESSION_ENV)
            finally:
                os._exit(126)
        terminal = cls(pid=pid, fd=fd)
        terminal.resize(cols, rows)
        os.set_blocking(fd, False)
        return terminal

    def resize(self, cols: int, rows: int) -> None:
        """Set the PTY's window size."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the shell's input."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[written:]

    def close(self, grace: float = CLOSE_GRACE) -> int | None:
        """Hang up (SIGHUP), wait ``grace`` for the session program, kill it and its session's rest; its code."""
        code: int | None = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + grace
        while (code := self.reap()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if code is None:
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        end_session(self.pid)  # what the session program could not end (it was killed)
        with_fd, self.fd = self.fd, -1
        if with_fd >= 0:
            os.close(with_fd)
        return code

    def reap(self) -> int | None:
        """The exit code if the session program has ended, else None."""
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status) if done else None
