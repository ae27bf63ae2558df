"""``vaporctl ssh VM [-- ssh args]``: ssh to the VM's address, as the API reports it (guest agent or DHCP lease)."""

from __future__ import annotations

import ipaddress
import os
import shutil
from typing import Annotated

import typer

from .errors import CLIError
from .names import vm_ref
from .power import VMArgument
from .session import NamespaceOption, client


def best_address(addresses: list[str]) -> str | None:
    """The address to connect to: IPv4 first, then global IPv6; never a link-local or loopback one."""
    usable = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("/")[0])
        except ValueError:
            continue
        if not (ip.is_link_local or ip.is_loopback):
            usable.append(ip)
    usable.sort(key=lambda ip: ip.version)
    return str(usable[0]) if usable else None


def ssh(
    ctx: typer.Context,
    vm: VMArgument,
    user: Annotated[str | None, typer.Option("--user", "-l", help="User to log in as in the guest.")] = None,
    namespace: NamespaceOption = None,
) -> None:
    """Run ssh to the VM's address; what follows -- goes to ssh (a command, -i KEY, -p PORT, ...)."""
    ref = vm_ref(vm, namespace)
    with client(ctx) as api:
        view = api.get(ref.path, namespace=ref.namespace)
    address = best_address(list(view.get("addresses") or []))
    if address is None:
        raise CLIError(
            f"vm {view['namespace']}/{view['name']} has no address yet (phase {view['status']}); "
            "it shows one once the guest agent answers or the guest takes a DHCP lease"
        )
    program = shutil.which("ssh")
    if program is None:
        raise CLIError("ssh is not installed (no ssh on PATH)")
    args = ["ssh", *(["-l", user] if user else []), address, *ctx.args]
    os.execv(program, args)
