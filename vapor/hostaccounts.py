"""Linux accounts of the machine this runs on, as a login sees them: PAM checks a password, groups give the role.

Shared by the two places a password can be checked: the agent's node-local
API (in a cluster the gateway asks the agent of a configured host, where the
users live) and the gateway itself when it runs on that host (``make dev``).
The check goes through PAM (python-pam, see vapor.pamstack), never through
``su``: run as root, ``su`` accepts any password (pam_rootok). Both calls
block for as long as PAM's modules work: run them in a thread. A refused
password does not wait out PAM's failure delay here: the caller delays the
answer (vapor.loginguard) without holding the thread.

A refresh has no password to check, yet must not outlive what a login would
now refuse: ``standing`` runs PAM's account stage (expiry, pam_access and
whatever the service stacks there) and checks the shadow lock that ``usermod
-L`` and ``passwd -l`` set, which pam_unix only looks at when a password is
given (OpenSSH checks it the same way for key logins).
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import TypedDict

from pydantic import BaseModel, ConfigDict, Field

from .pamstack import account_stage, authenticate

MAX_USERNAME = 256
MAX_PASSWORD = 4096
SHADOW = Path("/etc/shadow")


class Credentials(BaseModel):
    """A user name and password to check (a login's body, as the agent gets it from the gateway)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=MAX_USERNAME)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


def check_password(service: str, username: str, password: str) -> bool:
    """Whether PAM service ``service`` accepts ``password`` for ``username`` (a refusal returns at once)."""
    return authenticate(service, username, password)


def groups_of(username: str) -> list[str] | None:
    """The names of the user's groups (primary and supplementary), or None when there is no such user."""
    if "\x00" in username:
        return None
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        return None
    names: set[str] = set()
    for gid in os.getgrouplist(username, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return sorted(names)


def verify(service: str, username: str, password: str) -> list[str] | None:
    """The user's groups if PAM accepts the password, else None (also for a user the group database lacks)."""
    if not check_password(service, username, password):
        return None
    return groups_of(username)


class Standing(TypedDict):
    """An account as a refresh sees it: its groups, and why a login would now be refused (None: it would not)."""

    groups: list[str]
    refused: str | None


def password_locked(username: str, shadow: Path = SHADOW) -> bool:
    """Whether the user's shadow password is locked (starts with ``!``); an account without an entry is not."""
    try:
        lines = shadow.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return False  # no shadow file: accounts live elsewhere (NSS), their PAM stack decides
    prefix = username + ":"
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix) :].startswith("!")
    return False


def standing(service: str, username: str, shadow: Path = SHADOW) -> Standing | None:
    """The account's groups and whether a login would now be refused, or None when there is no such user.

    A shadow file that cannot be read refuses too: a lock that cannot be seen
    is not taken for no lock.
    """
    groups = groups_of(username)
    if groups is None:
        return None
    try:
        locked = password_locked(username, shadow)
    except OSError as exc:
        return Standing(groups=groups, refused=f"cannot read {shadow} to check the password lock: {exc.strerror}")
    refused = "the password is locked" if locked else account_stage(service, username)
    return Standing(groups=groups, refused=refused)
