"""Linux accounts of the machine this runs on, as a login sees them: PAM checks a password, groups give the role.

Shared by the two places a password can be checked: the agent's node-local
API (in a cluster the gateway asks the agent of a configured host, where the
users live) and the gateway itself when it runs on that host (``make dev``).
The check goes through PAM (python-pam), never through ``su``: run as root,
``su`` accepts any password (pam_rootok). Both calls block (PAM delays a
failure on purpose): run them in a thread.
"""

from __future__ import annotations

import grp
import os
import pwd

import pam  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field

MAX_USERNAME = 256
MAX_PASSWORD = 4096


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
