"""The ``vaporctl`` command (also run by kubectl as ``kubectl vapor``): its commands, and errors without tracebacks."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from . import auth, console, get, images, migrate, power, snapshot, ssh, vnc
from .errors import CLIError
from .session import Session

app = typer.Typer(
    name="vaporctl",
    help="Manage Vapor's hosts, virtual machines, migrations and images through its gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", envvar="VAPOR_SERVER", show_envvar=True, show_default=False,
                     help="The gateway's URL (default: the server of your last login)."),
    ] = None,
) -> None:  # fmt: skip
    """Manage Vapor's hosts, virtual machines, migrations and images through its gateway."""
    ctx.obj = Session(server)


app.command()(auth.login)
app.command()(auth.logout)
app.command()(get.get)
app.command()(power.start)
app.command()(power.stop)
app.command()(power.restart)
app.command()(migrate.migrate)
app.command()(migrate.follow)
app.add_typer(images.app, name="image")
app.command()(snapshot.snapshot)
app.command()(console.console)
app.command()(vnc.vnc)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(ssh.ssh)


def main() -> None:
    """Run the command; a failure is one line on stderr and a non-zero exit, never a traceback."""
    prog = os.path.basename(sys.argv[0]) or "vaporctl"
    try:
        app(prog_name=prog)
    except CLIError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("VAPOR_DEBUG"):
            raise
        print(f"error: unexpected failure: {type(exc).__name__}: {exc} (VAPOR_DEBUG=1 shows where)", file=sys.stderr)
        sys.exit(1)
