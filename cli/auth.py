"""``vaporctl login`` and ``logout``: a Linux user's password traded for tokens kept in the config file."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer

from . import config as cfg
from .client import log_in, log_out
from .errors import USAGE_ERROR, CLIError
from .session import session


def login(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            "-s",
            help=f"The gateway's URL (default: the last one, else {cfg.DEFAULT_SERVER}).",
            show_default=False,
        ),
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Linux user (default: yours).", show_default=False)
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Log in as a Linux user of the hosts; the password is asked for (or read with --password-stdin).

    The tokens are kept in $XDG_CONFIG_HOME/vapor/config.json (default
    ~/.config/vapor), readable by you only, and renewed when they expire.
    """
    url = cfg.normalized(server) if server else session(ctx).server
    user = username or os.environ.get("USER") or getpass.getuser()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {user} at {url}: ")
    else:
        raise CLIError("standard input is not a terminal: give the password with --password-stdin", USAGE_ERROR)
    if not password:
        raise CLIError("no password given", USAGE_ERROR)
    done = log_in(url, user, password)
    print(f"Logged in to {url} as {done.username} (role {done.role}).")


def logout(ctx: typer.Context) -> None:
    """Log out: the server revokes the refresh token, and the tokens leave the config file."""
    url = session(ctx).server
    who = log_out(url)
    if who is None:
        print(f"Not logged in to {url}.")
    else:
        print(f"Logged out {who} from {url}.")
