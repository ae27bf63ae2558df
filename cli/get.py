"""``vaporctl get hosts|vms|migrations|images [NAME]``: the API's lists as tables, or its objects as JSON/YAML."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer

from .client import Client
from .names import vm_ref
from .output import age, dump, size, table, text
from .session import NamespaceOption, client
from .ssh import best_address

Row = Callable[[dict[str, Any], bool], list[str]]


def _host_row(h: dict[str, Any], wide: bool) -> list[str]:
    cpu = (h.get("cpu") or {}).get("threads")
    memory = (h.get("memory") or {}).get("total")
    row = [h["name"], h["status"], str(h.get("vm_count", 0)), text(cpu), size(memory) if memory else "<none>"]
    row.append("yes" if h.get("maintenance") else "no")
    if wide:
        row += [text(h.get("id")), text(h.get("hostname")), text(h.get("kernel")), text(h.get("os"))]
    return row


def _vm_row(v: dict[str, Any], wide: bool) -> list[str]:
    row = [v["namespace"], v["name"], v["status"], text(v.get("host")), str(v["cpu"]), v["memory"]]
    row += [text(best_address(list(v.get("addresses") or []))), age(v.get("created_at"))]
    if wide:
        row += [v["id"], v["run_strategy"], text(v.get("addresses"))]
    return row


def _percent(m: dict[str, Any]) -> str:
    progress = m.get("progress")
    return f"{progress['percent']}%" if progress else "<none>"


def _migration_row(m: dict[str, Any], wide: bool) -> list[str]:
    row = [m["namespace"], m["name"], m["vm_name"], m["phase"], text(m.get("source_host_name"))]
    row += [text(m.get("destination_host_name")), _percent(m), age(m.get("created_at"))]
    if wide:
        row += [m["id"], "live" if m.get("live") else "offline", text(m.get("failure_reason"))]
    return row


def _image_row(i: dict[str, Any], wide: bool) -> list[str]:
    source = next(iter(i.get("source") or {}), "<none>")
    row = [i["name"], i["format"], i["phase"], str(i.get("ready_hosts", 0)), size(i.get("size"))]
    row.append(age(i.get("created_at")))
    if wide:
        row += [source.replace("_", "-"), text(i.get("sha256")), size(i.get("virtual_size"))]
    return row


@dataclass(frozen=True)
class Kind:
    """One kind the API lists: where, under which key, and its columns."""

    path: str
    key: str
    headers: list[str]
    wide_headers: list[str]
    row: Row
    namespaced: bool


KINDS = {
    "hosts": Kind("/hosts", "hosts", ["NAME", "STATUS", "VMS", "CPUS", "MEMORY", "MAINTENANCE"],
                  ["ID", "HOSTNAME", "KERNEL", "OS"], _host_row, False),
    "vms": Kind("/vms", "vms", ["NAMESPACE", "NAME", "STATUS", "HOST", "CPUS", "MEMORY", "ADDRESS", "AGE"],
                ["ID", "RUN STRATEGY", "ADDRESSES"], _vm_row, True),
    "migrations": Kind("/migrations", "migrations",
                       ["NAMESPACE", "NAME", "VM", "PHASE", "SOURCE", "DESTINATION", "PROGRESS", "AGE"],
                       ["ID", "MODE", "FAILURE"], _migration_row, True),
    "images": Kind("/images", "images", ["NAME", "FORMAT", "PHASE", "READY HOSTS", "SIZE", "AGE"],
                   ["SOURCE", "SHA256", "VIRTUAL SIZE"], _image_row, False),
}  # fmt: skip
ALIASES = {"host": "hosts", "vm": "vms", "migration": "migrations", "image": "images"}
KindName = Enum("KindName", {k: k for k in [*KINDS, *ALIASES]}, type=str)  # type: ignore[misc]


class Output(StrEnum):
    """-o: other forms than the table."""

    wide = "wide"
    json = "json"
    yaml = "yaml"


def _one(api: Client, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
    if kind.key == "vms":
        ref = vm_ref(name, namespace)
        return dict(api.get(ref.path, namespace=ref.namespace))
    if kind.namespaced:
        ref = vm_ref(name, namespace)  # NAMESPACE/NAME, NAME with -n, or an id: as for VMs
        return dict(api.get(f"{kind.path}/{quote(ref.ident, safe='')}", namespace=ref.namespace))
    return dict(api.get(f"{kind.path}/{quote(name, safe='')}"))


def get(
    ctx: typer.Context,
    kind: Annotated[
        KindName,
        typer.Argument(help="hosts, vms, migrations or images (or host, vm, migration, image).", show_default=False),
    ],
    name: Annotated[
        str | None, typer.Argument(help="One object: a name (NAMESPACE/NAME for VMs and migrations) or an id.")
    ] = None,
    output: Annotated[Output | None, typer.Option("--output", "-o", help="wide, json or yaml.")] = None,
    namespace: NamespaceOption = None,
) -> None:
    """List hosts, VMs, migrations or images, or show one of them.

    VMs and migrations of every namespace are listed unless -n names one.
    """
    found = KINDS[ALIASES.get(kind.value, kind.value)]
    form = output.value if output is not None else None
    with client(ctx) as api:
        if name is not None:
            items = [_one(api, found, name, namespace)]
        elif found.namespaced and namespace is not None:
            items = list(api.get(found.path, namespace=namespace)[found.key])
        else:
            items = list(api.get(found.path)[found.key])
    if form in ("json", "yaml"):
        dump(items[0] if name is not None else {found.key: items, "count": len(items)}, form)
        return
    wide = form == "wide"
    if not items and name is None:
        where = f" in namespace {namespace}" if found.namespaced and namespace else ""
        print(f"No {found.key} found{where}.", file=sys.stderr)
        return
    table(found.headers + (found.wide_headers if wide else []), [found.row(item, wide) for item in items])
