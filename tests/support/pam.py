"""Real Linux users and groups for PAM tests, and a test-only PAM service that fails fast.

Everything is created with unique names and removed afterwards, even when the
test fails; existing accounts are never touched. Passwords are checked by real
PAM (pam_unix), never through ``su`` (pam_rootok would accept anything as root).
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PAM_DIR = Path("/etc/pam.d")


@dataclass(frozen=True)
class LinuxUser:
    """A real account made for one test."""

    name: str
    password: str
    groups: tuple[str, ...] = ()


def _run(*args: str, input: str | None = None) -> None:
    subprocess.run(args, input=input, text=True, check=True, capture_output=True)


@dataclass
class Accounts:
    """Makes users and groups, and removes every one of them on close."""

    prefix: str = field(default_factory=lambda: f"vt{uuid.uuid4().hex[:6]}")
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def group(self, base: str) -> str:
        """A new group (name: prefix + base)."""
        name = f"{self.prefix}{base}"[:32]
        _run("groupadd", name)
        self.groups.append(name)
        return name

    def user(self, base: str, *, groups: tuple[str, ...] = ()) -> LinuxUser:
        """A new user with a home directory, a random password and the given extra groups."""
        name = f"{self.prefix}{base}"[:32]
        password = secrets.token_urlsafe(12)
        args = ["useradd", "-m", "-s", "/bin/sh"]
        if groups:
            args += ["-G", ",".join(groups)]
        _run(*args, name)
        self.users.append(name)
        _run("chpasswd", input=f"{name}:{password}\n")
        return LinuxUser(name=name, password=password, groups=groups)

    def close(self) -> None:
        """Remove every user (with home) and group made here."""
        for name in self.users:
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True, check=False)
        self.users.clear()
        self.groups.clear()


@contextmanager
def linux_accounts() -> Iterator[Accounts]:
    """Accounts removed at the end of the block."""
    accounts = Accounts()
    try:
        yield accounts
    finally:
        accounts.close()


@contextmanager
def pam_service(*, refuse_all: bool = False, extra: str = "") -> Iterator[str]:
    """A PAM service checking /etc/shadow with pam_unix, without the failure delay; removed after.

    ``refuse_all``: a service that refuses every password (pam_deny), to show
    that a check happened somewhere else. ``extra``: more lines of rules
    (an account or session stage to watch).
    """
    name = f"vapor-test-{uuid.uuid4().hex[:8]}"
    path = PAM_DIR / name
    if refuse_all:
        rules = "auth     required pam_deny.so\naccount  required pam_deny.so\n"
    else:
        rules = "auth     required pam_unix.so nodelay\naccount  required pam_unix.so\n" + extra
    path.write_text("# Vapor test service. Removed by the test.\n" + rules)
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)
