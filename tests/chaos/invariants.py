"""What must hold once every part is back, read from the real hosts' libvirt and from the resources.

- every VM whose resource exists (and is not being deleted) has exactly one
  domain, on exactly one host, the host its status names, in the state its
  runStrategy asks (Running: running; Halted: shut off; Paused: paused);
- no domain of the test's namespace without a VM (none orphaned, none left
  behind by a migration), and no VM left half-deleted;
- every Migration has reached a final phase (Succeeded, Failed, Cancelled);
- no VM was placed twice (at most one ``Scheduled`` Event per VM).

:func:`violations` lists what does not hold now; :func:`settle` waits (60 s by
default) for all of it to hold and returns what still does not.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import libvirt

from ..conftest import Kubectl

TERMINAL = ("Succeeded", "Failed", "Cancelled")
WANTED_STATE = {
    "Running": (libvirt.VIR_DOMAIN_RUNNING,),
    "Halted": (libvirt.VIR_DOMAIN_SHUTOFF,),
    "Paused": (libvirt.VIR_DOMAIN_PAUSED,),
}
STATE_NAMES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
               libvirt.VIR_DOMAIN_PAUSED: "paused"}  # fmt: skip


def _items(kubectl: Kubectl, kind: str, namespace: str) -> list[dict[str, Any]]:
    got = kubectl("get", kind, "-n", namespace, "-o", "json", check=False)
    if got.returncode != 0:
        raise RuntimeError(f"kubectl get {kind}: {got.stderr.strip()}")
    return list(json.loads(got.stdout)["items"])


def _domains(conns: dict[str, libvirt.virConnect], namespace: str) -> dict[str, list[tuple[str, int]]]:
    """Domain name -> (host, state) for every domain of ``namespace`` on every host."""
    found: dict[str, list[tuple[str, int]]] = {}
    for host, conn in conns.items():
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(f"{namespace}_"):
                try:
                    state = dom.state()[0]
                except libvirt.libvirtError:  # gone meanwhile
                    continue
                found.setdefault(dom.name(), []).append((host, state))
    return found


def violations(kubectl: Kubectl, conns: dict[str, libvirt.virConnect], namespace: str) -> list[str]:
    """What does not hold right now (empty: everything does)."""
    found: list[str] = []
    domains = _domains(conns, namespace)
    vms = _items(kubectl, "virtualmachines.vapor.io", namespace)
    names = set()
    for vm in vms:
        name = vm["metadata"]["name"]
        dom = f"{namespace}_{name}"
        names.add(dom)
        if vm["metadata"].get("deletionTimestamp"):
            found.append(f"VM {name} still being deleted (finalizers {vm['metadata'].get('finalizers')})")
            continue
        status = vm.get("status") or {}
        strategy = vm["spec"].get("runStrategy", "Halted")
        where = domains.get(dom, [])
        if len(where) != 1:
            found.append(f"VM {name} ({strategy}, host {status.get('host')}) has {len(where)} domains: {where}")
            continue
        host, state = where[0]
        if host != status.get("host"):
            found.append(f"VM {name}: its domain is on {host}, its status says {status.get('host')}")
        if state not in WANTED_STATE[strategy]:
            found.append(f"VM {name}: {strategy} but its domain is {STATE_NAMES.get(state, state)} on {host}")
    for dom, where in domains.items():
        if dom not in names:
            found.append(f"domain {dom} on {[h for h, _ in where]} has no VM")
    for m in _items(kubectl, "migrations.vapor.io", namespace):
        phase = (m.get("status") or {}).get("phase")
        if phase not in TERMINAL:
            found.append(f"Migration {m['metadata']['name']} of {m['spec'].get('vmName')} is {phase}, not final")
    scheduled = Counter(
        (e.get("regarding") or {}).get("uid")
        for e in _items(kubectl, "events.events.k8s.io", namespace)
        if e.get("reason") == "Scheduled"
    )
    found += [f"VM uid {uid} placed {n} times" for uid, n in scheduled.items() if n > 1]
    return found


def settle(kubectl: Kubectl, conns: dict[str, libvirt.virConnect], namespace: str, timeout: float = 60.0) -> list[str]:
    """Wait up to ``timeout`` s for every invariant to hold; what still does not then (empty: all hold)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = violations(kubectl, conns, namespace)
        except (RuntimeError, libvirt.libvirtError) as exc:
            found = [f"could not read the state: {exc}"]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1.0)
