"""Passwords and roles of Linux users: PAM checks the password, group membership gives the role.

The check runs on this machine through PAM (python-pam), never through ``su``:
run as root, ``su`` accepts any password (pam_rootok).
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
from dataclasses import dataclass

import pam  # type: ignore[import-untyped]

from ._schema import Role


@dataclass(frozen=True)
class Account:
    """A Linux user as the gateway sees it."""

    username: str
    role: Role
    groups: tuple[str, ...]


def _check(service: str, username: str, password: str) -> bool:
    try:
        # A fresh authenticator per call: safe from several threads at once.
        return bool(pam.PamAuthenticator().authenticate(username, password, service=service, resetcreds=False))
    except ValueError:  # NUL in a field
        return False


async def check_password(service: str, username: str, password: str) -> bool:
    """Whether PAM service ``service`` accepts the password (off the event loop: PAM delays failures)."""
    return await asyncio.to_thread(_check, service, username, password)


def account(username: str, admin_groups: frozenset[str]) -> Account | None:
    """The user's groups and role, or None when the user does not exist (any more)."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        return None
    names: list[str] = []
    for gid in os.getgrouplist(username, entry.pw_gid):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    role: Role = "admin" if admin_groups.intersection(names) else "viewer"
    return Account(username=username, role=role, groups=tuple(sorted(set(names))))
