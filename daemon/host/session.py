"""The program between the agent and a terminal's shell: ``python -m vapor.agent.host.session``, what login(1) does.

The agent starts it on the terminal's PTY (it is the session leader, the PTY
its controlling terminal), as root, with ``--service``, ``--user`` and, with
``--host-root``, ``--root``. It:

1. chroots into the node's root (``--root``), after opening /proc and
   naming its terminal;
2. reads the account from the node's passwd; refuses root (uid 0) unless
   ``--allow-root``, and a shell /etc/shells does not list (nologin, false);
3. runs the node's PAM for ``--service``: the account stage (locks, expiry,
   pam_access), credentials and pam_open_session (pam_limits, pam_env,
   pam_lastlog, pam_loginuid, pam_systemd: whatever the service stacks);
4. forks the shell: the user's groups, gid and uid (in that order, the exec
   fails closed if any step fails), the home folder, the account's own shell
   as a login shell, PAM's environment;
5. waits for the shell; a hang-up (SIGHUP or SIGTERM: the socket closed) is
   passed on to it;
6. ends every process left in the terminal's session (background jobs,
   ``nohup``: SIGHUP, then SIGKILL after KILL_GRACE), then pam_close_session.

It exits with the shell's exit code; a refusal is written to the terminal
(``vapor: ...``) and exits REFUSED. Everything it needs is imported before
it chroots: the node's files hold no Python of ours.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from vapor.pamstack import PamError, Session

REFUSED = 126
KILL_GRACE = 1.0  # seconds the session's processes have between SIGHUP and SIGKILL
NOLOGIN = ("nologin", "false")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def login_shells(shells_file: Path = Path("/etc/shells")) -> list[str]:
    """The shells /etc/shells lists (a login shell must be one of them)."""
    try:
        lines = shells_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if line.strip().startswith("/")]


def shell_refusal(shell: str, shells: Iterable[str]) -> str | None:
    """Why ``shell`` is no login shell (None: it is one)."""
    if not shell or os.path.basename(shell) in NOLOGIN or shell not in shells:
        return f"the account's shell {shell or '(none)'!r} is not a login shell (not listed in /etc/shells)"
    return None


def _stat(proc: int | str, pid: str) -> bytes:
    if isinstance(proc, str):
        return Path(proc, pid, "stat").read_bytes()
    fd = os.open(f"{pid}/stat", os.O_RDONLY, dir_fd=proc)
    try:
        return os.read(fd, 1024)
    finally:
        os.close(fd)


def session_members(sid: int, proc: int | str = "/proc") -> list[int]:
    """Processes of session ``sid`` that have not ended (``proc``: /proc, or an open descriptor of it)."""
    found = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            stat = _stat(proc, name)
        except OSError:
            continue  # ended meanwhile
        fields = stat.rpartition(b")")[2].split()  # state, ppid, pgrp, session, ...
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            found.append(int(name))
    return found


def end_session(sid: int, proc: int | str = "/proc", grace: float = KILL_GRACE) -> None:
    """SIGHUP every process of session ``sid`` but the caller, then SIGKILL those still there after ``grace``."""
    me = os.getpid()
    deadline = time.monotonic() + grace
    signal_number = signal.SIGHUP
    while members := [pid for pid in session_members(sid, proc) if pid != me]:
        for pid in members:
            try:
                os.kill(pid, signal_number)
                os.kill(pid, signal.SIGCONT)  # a stopped job sees its signal too
            except ProcessLookupError:
                pass
        if signal_number == signal.SIGKILL and time.monotonic() > deadline + 5:
            break  # unkillable (in uninterruptible sleep): give up rather than hang
        time.sleep(0.05)
        if time.monotonic() > deadline:
            signal_number = signal.SIGKILL


def _show(text: str) -> None:
    """A PAM message (motd, last login) on the terminal."""
    os.write(1, (text.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n").encode(errors="replace"))


def _refuse(text: str) -> int:
    _show(f"vapor: {text}")
    return REFUSED


def _exec_shell(account: pwd.struct_passwd, env: dict[str, str]) -> None:
    """In the shell's child: become the user and exec the login shell; never returns."""
    try:
        for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        os.initgroups(account.pw_name, account.pw_gid)
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
        if account.pw_uid != 0 and (os.geteuid() == 0 or os.getegid() != account.pw_gid):
            os._exit(REFUSED)
        home = account.pw_dir if os.path.isdir(account.pw_dir) else "/"
        os.chdir(home)
        shell = account.pw_shell
        os.execve(shell, ["-" + os.path.basename(shell)], {**env, "HOME": home})
    finally:
        os._exit(REFUSED)


def run(service: str, username: str, root: str | None, allow_root: bool) -> int:
    """Steps 1-6 of the module's docstring; the shell's exit code, or REFUSED."""
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    tty = os.ttyname(0) if os.isatty(0) else None  # named before the chroot, whose /dev may lack it
    if root:
        os.chroot(root)
        os.chdir("/")
        sys.path.clear()  # nothing more is imported from the node's files
    try:
        account = pwd.getpwnam(username)
    except KeyError:
        return _refuse(f"no user {username!r} on this host")
    if account.pw_uid == 0 and not allow_root:
        return _refuse("root gets no terminal through Vapor (the agent's --terminal-allow-root)")
    refusal = shell_refusal(account.pw_shell, login_shells())
    if refusal:
        return _refuse(refusal)
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(number, signal.SIG_IGN)
    hang_up = _HangUp()
    signal.signal(signal.SIGHUP, hang_up)
    signal.signal(signal.SIGTERM, hang_up)
    try:
        session = Session(service, username, _show, tty)
    except PamError as exc:
        return _refuse(f"PAM: {exc}")
    try:
        try:
            session.open()
        except PamError as exc:
            return _refuse(f"PAM refused the session: {exc}")
        env = {
            "TERM": "xterm-256color",
            "PATH": ROOT_PATH if account.pw_uid == 0 else BASE_PATH,
            **session.environment(),
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
            "SHELL": account.pw_shell,
        }
        shell = os.fork()
        if shell == 0:
            _exec_shell(account, env)
        hang_up.started(shell)
        _, status = os.waitpid(shell, 0)
        end_session(os.getsid(0), proc)
        return os.waitstatus_to_exitcode(status)
    finally:
        session.close()


class _HangUp:
    """The handler of SIGHUP and SIGTERM: passes the hang-up on to the shell (once it runs)."""

    def __init__(self) -> None:
        self.shell = 0
        self.seen = False

    def __call__(self, _number: int, _frame: object) -> None:
        self.seen = True
        self._pass_on()

    def started(self, shell: int) -> None:
        self.shell = shell
        if self.seen:
            self._pass_on()

    def _pass_on(self) -> None:
        if self.shell:
            for number in (signal.SIGHUP, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.shell, number)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's docstring); the exit code."""
    parser = argparse.ArgumentParser(prog="vapor-agent-session")
    parser.add_argument("--service", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--root", default=None)
    parser.add_argument("--allow-root", action="store_true")
    args = parser.parse_args(argv)
    return run(args.service, args.user, args.root, args.allow_root)


if __name__ == "__main__":
    sys.exit(main())
