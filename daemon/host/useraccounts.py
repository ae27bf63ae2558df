"""The host's human accounts, read and changed with the host's own tools (useradd, chpasswd, userdel).

Plain functions without the agent's web stack, so that they also run in the
short-lived child that works inside the node's root (see hostroot). Human
accounts are those with a uid of 1000 or more, except ``nobody``; root and the
system's own accounts are never changed here. Requests are validated again
with vapor.agentapi.userspec (the gateway already did), then against the host:
supplementary groups must exist (INVALID_INPUT naming the group), a new name
must be free (409 ALREADY_EXISTS), a reset needs an existing human account
(404 NOT_FOUND; root and system accounts are INVALID_INPUT).

Commands run as argument lists, without a shell, names after ``--``;
passwords go to chpasswd on its standard input only, and are never logged.
A user whose password cannot be set is removed again, so a failed create
leaves nothing behind.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path
from typing import Any

from vapor.agentapi.errors import ALREADY_EXISTS, INTERNAL_ERROR, INVALID_INPUT, NOT_FOUND, Refusal
from vapor.agentapi.userspec import FIRST_HUMAN_UID, NOBODY, CreateUserRequest, ResetPasswordRequest

from .session import login_shells

SHELL = "/bin/bash"
SHELLS = Path("/etc/shells")
COMMAND_TIMEOUT = 60.0
USERADD_NAME_IN_USE = 9  # useradd's exit status when the name is taken


class AccountError(Refusal):
    """A refusal about the host's accounts."""


def _is_human(entry: pwd.struct_passwd) -> bool:
    return entry.pw_uid >= FIRST_HUMAN_UID and entry.pw_name != NOBODY


def _describe(entry: pwd.struct_passwd, members: dict[str, list[str]]) -> dict[str, Any]:
    try:
        primary = [grp.getgrgid(entry.pw_gid).gr_name]
    except KeyError:
        primary = []
    groups = primary + [g for g in members.get(entry.pw_name, []) if g not in primary]
    return {
        "username": entry.pw_name,
        "uid": str(entry.pw_uid),
        "gid": str(entry.pw_gid),
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
        "groups": groups,
    }


def _memberships() -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for group in grp.getgrall():
        for name in group.gr_mem:
            members.setdefault(name, []).append(group.gr_name)
    return members


def list_users() -> list[dict[str, Any]]:
    """Every human account of the host, by uid."""
    members = _memberships()
    return [_describe(e, members) for e in sorted(pwd.getpwall(), key=lambda e: e.pw_uid) if _is_human(e)]


def _one(name: str) -> dict[str, Any]:
    return _describe(pwd.getpwnam(name), _memberships())


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, text=True, capture_output=True, check=False, timeout=COMMAND_TIMEOUT, close_fds=True
    )


def _set_password(name: str, password: str) -> None:
    done = _run(["chpasswd"], stdin=f"{name}:{password}\n")
    if done.returncode != 0:
        reason = done.stderr.strip().replace(password, "***")[:300]
        raise AccountError(500, INTERNAL_ERROR, f"chpasswd could not set the password of {name!r}", reason)


def create_user(request: dict[str, Any]) -> dict[str, Any]:
    """useradd, then chpasswd; the account is removed again if its password cannot be set."""
    body = CreateUserRequest.model_validate(request)
    name = body.username
    groups = body.group_list()
    for group in groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise AccountError(400, INVALID_INPUT, f"group {group!r} does not exist on this host") from None
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        raise AccountError(409, ALREADY_EXISTS, f"user {name!r} already exists")
    args = ["useradd", "-m", "-s", SHELL]
    if groups:
        args += ["-G", ",".join(groups)]
    done = _run([*args, "--", name])
    if done.returncode == USERADD_NAME_IN_USE:
        raise AccountError(409, ALREADY_EXISTS, f"a user or group named {name!r} already exists", done.stderr.strip())
    if done.returncode != 0:
        raise AccountError(500, INTERNAL_ERROR, f"useradd could not create {name!r}", done.stderr.strip()[:300])
    try:
        _set_password(name, body.password)
    except BaseException:
        _run(["userdel", "-r", "--", name])
        raise
    return _one(name)


def reset_password(name: str, request: dict[str, Any]) -> None:
    """Set the password of an existing human account with chpasswd."""
    body = ResetPasswordRequest.model_validate(request)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AccountError(404, NOT_FOUND, f"user {name!r} does not exist on this host") from None
    if not _is_human(entry):
        raise AccountError(
            400,
            INVALID_INPUT,
            f"user {name!r} is root or a system account (uid {entry.pw_uid}); only accounts with a uid of "
            f"{FIRST_HUMAN_UID} or more are managed here",
        )
    _set_password(name, body.password)


def login_account(name: str) -> dict[str, Any] | None:
    """What a login shell for ``name`` needs (ids, home, shell) and the shells /etc/shells lists; None: no user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {
        "name": entry.pw_name,
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
        "shells": login_shells(SHELLS),
    }
