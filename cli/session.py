"""What every command shares: the server (--server, VAPOR_SERVER, else the last login) and the -n option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from . import config as cfg
from .client import Client

NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace of the VM or migration (default: default).", show_default=False),
]


@dataclass
class Session:
    """The options of the root command."""

    server_override: str | None

    @property
    def server(self) -> str:
        """The server this run talks to."""
        return cfg.server_url(self.server_override, cfg.load())


def session(ctx: typer.Context) -> Session:
    """The run's session, made by the root command."""
    found = ctx.find_object(Session)
    return found if found is not None else Session(None)


def client(ctx: typer.Context) -> Client:
    """A logged-in client of the run's server."""
    return Client(session(ctx).server)
