"""Linux accounts of the machine this runs on, as a login sees them: PAM checks a password, groups give the role.

Shared by the two places a password can be checked: the agent's node-local
API (in a cluster the gateway asks the agent of a configured host, where the
users live) and the gateway itself when it runs on that host (``make dev``).
The check goes through PAM (python-pam), never through ``su``: run as root,
``su`` accepts any password (pam_rootok). Both calls block (PAM delays a
failure on purpose): run them in a thread.

A refresh has no password to check, yet must not outlive what a login would
now refuse: ``standing`` runs PAM's account stage (expiry, pam_access and
whatever the service stacks there) and checks the shadow lock that ``usermod
-L`` and ``passwd -l`` set, which pam_unix only looks at when a password is
given (OpenSSH checks it the same way for key logins).
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
from pathlib import Path
from typing import Any, TypedDict

import pam  # type: ignore[import-untyped]
from pam.__internals import (  # type: ignore[import-untyped]
    PAM_CONV_ERR,
    PAM_SILENT,
    PAM_SUCCESS,
    PamConv,
    PamHandle,
    conv_func,
)
from pydantic import BaseModel, ConfigDict, Field

MAX_USERNAME = 256
MAX_PASSWORD = 4096
SHADOW = Path("/etc/shadow")


class Credentials(BaseModel):
    """A user name and password to check (a login's body, as the agent gets it from the gateway)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=MAX_USERNAME)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


def check_password(service: str, username: str, password: str) -> bool:
    """Whether PAM service ``service`` accepts ``password`` for ``username``."""
    try:
        # A fresh authenticator per call: safe from several threads at once.
        return bool(pam.PamAuthenticator().authenticate(username, password, service=service, resetcreds=False))
    except ValueError:  # NUL in a field
        return False


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


@conv_func  # type: ignore[untyped-decorator]
def _no_conversation(_count: int, _messages: Any, _responses: Any, _data: Any) -> int:
    """The account stage asks nothing of a user who is not there: any prompt fails the stage."""
    return int(PAM_CONV_ERR)


_CONVERSATION = PamConv(_no_conversation, None)


def account_stage(service: str, username: str) -> str | None:
    """PAM's account management for ``username`` under ``service``: None if it accepts, else its reason."""
    if "\x00" in username or "\x00" in service:
        return "a NUL in the user or service name"
    authenticator = pam.PamAuthenticator()
    handle = PamHandle()
    status = authenticator.pam_start(
        service.encode(), username.encode(), ctypes.byref(_CONVERSATION), ctypes.byref(handle)
    )
    if status != PAM_SUCCESS:
        return f"PAM could not start service {service!r} (status {status})"
    try:
        status = authenticator.pam_acct_mgmt(handle, PAM_SILENT)
        return None if status == PAM_SUCCESS else str(authenticator.pam_strerror(handle, status).decode())
    finally:
        authenticator.pam_end(handle, status)


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
