"""A PTY login shell for one user: forked here, dropped to the user's uid/gid/groups before exec.

The account (ids, home, shell, the shells /etc/shells lists) is read in the
node's root (see _hostroot, ``login_account``). When that root is not the
agent's own, the child chroots into it first, so the shell, its programs and
its files are the node's. The child never keeps root unless the user is root:
``initgroups`` sets the user's supplementary groups, then ``setgid`` and
``setuid`` (in that order), and the exec fails closed (the child exits 126)
if any step fails.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def allowed_shell(account: LoginAccount, shell: str | None) -> str:
    """The shell to run: the requested one if /etc/shells lists it, else the user's login shell."""
    if not shell:
        return account.shell or "/bin/sh"
    if shell != account.shell and shell not in account.shells:
        raise TerminalError(f"shell {shell!r} is not listed in /etc/shells")
    return shell


@dataclass
class Terminal:
    """A running shell on a PTY: ``fd`` is the master side, ``pid`` the child."""

    pid: int
    fd: int

    @classmethod
    def open(
        cls,
        account: LoginAccount,
        *,
        root: Path | None = None,
        shell: str | None = None,
        cols: int = 80,
        rows: int = 24,
    ) -> Terminal:
        """Fork ``shell`` (or the account's) as the account on a new PTY of ``cols`` x ``rows``."""
        program = allowed_shell(account, shell)
        pid, fd = pty.fork()
        if pid == 0:  # the child: into the node's root, become the user, then exec the login shell
            try:
                if root is not None:  # the node's root (HostRoot.chroot), when it is not the agent's own
                    os.chroot(root)
                    os.chdir("/")
                os.initgroups(account.name, account.gid)
                os.setgid(account.gid)
                os.setuid(account.uid)
                if account.uid != 0 and os.geteuid() == 0:
                    os._exit(126)
                home = account.home if os.path.isdir(account.home) else "/"
                os.chdir(home)
                env = {
                    "HOME": home,
                    "USER": account.name,
                    "LOGNAME": account.name,
                    "SHELL": program,
                    "TERM": "xterm-256color",
                    "PATH": "/usr/local/bin:/usr/bin:/bin"
                    + (":/usr/local/sbin:/usr/sbin:/sbin" if not account.uid else ""),
                }
                os.execve(program, ["-" + os.path.basename(program)], env)
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

    def close(self) -> int | None:
        """Hang up the shell (SIGHUP, then SIGKILL), reap it and close the PTY; its exit code if known."""
        code: int | None = None
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                done, status = os.waitpid(self.pid, 0 if sig == signal.SIGKILL else os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
        with_fd, self.fd = self.fd, -1
        if with_fd >= 0:
            os.close(with_fd)
        return code

    def reap(self) -> int | None:
        """The exit code if the shell has ended, else None."""
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status) if done else None
