"""``vaporctl start|stop|restart VM``: POST /vms/{id}/action, waiting for the agent to report the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from .errors import CLIError
from .names import vm_ref
from .session import NamespaceOption, client

VMArgument = Annotated[str, typer.Argument(help="NAME (with -n), NAMESPACE/NAME, or the VM's id.", show_default=False)]
WaitOption = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for the host to carry it out (0: do not wait).", min=0, max=300)
]


def _act(ctx: typer.Context, action: str, vm: str, namespace: str | None, force: bool, wait: float) -> None:
    ref = vm_ref(vm, namespace)
    with client(ctx) as api:
        result = api.post(f"{ref.path}/action", {"action": action, "force": force}, namespace=ref.namespace, wait=wait)
    shown = f"{result['namespace']}/{result['name']}"
    if result.get("phase") == "Failed" and not result.get("completed"):
        raise CLIError(f"vm {shown}: {result['message']}")
    print(f"vm {shown}: {result['message']}" + (f" (phase {result['phase']})" if result.get("phase") else ""))


def _command(action: str, summary: str, force_help: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        vm: VMArgument,
        namespace: NamespaceOption = None,
        force: bool = False,
        wait: WaitOption = 30,
    ) -> None:
        _act(ctx, action, vm, namespace, force, wait)

    command.__name__ = action
    command.__annotations__["force"] = Annotated[bool, typer.Option("--force", help=force_help)]
    command.__doc__ = summary
    return command


start = _command(
    "start", "Start a VM (admin) and wait until it runs.", "Accepted for symmetry; a start is never forced."
)
stop = _command(
    "stop",
    "Stop a VM (admin): an ACPI shutdown of the guest, or a power off with --force.",
    "Power off at once instead of asking the guest to shut down.",
)
restart = _command("restart", "Restart a VM (admin).", "Reset at once instead of asking the guest to reboot.")
