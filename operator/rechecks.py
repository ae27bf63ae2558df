"""The operator's second looks: one pass for the whole cluster, not a kopf timer on every object.

Some decisions must be taken again without their object changing: a VM no
host could take (hosts come, go and free up), a Migration in flight (its
hosts turn NotReady, slots free up), a Host draining (its migrations end).

A kopf timer on each such object would do it, but a timer whose ``when``
filter stops matching (a VM once placed, a Migration once done, a Host once
drained) is never seen by kopf to have exited, so kopf touches the object (an
annotation patch, ``<group>/touch-dummy``) every 60 s for as long as it exists,
and holds its own finalizer on it: with 10,000 VMs that is 10,000 writes a
minute from an idle fleet (found by bench/fleet.py). So the looks are taken
here, from the ledger's caches, by one timer on the Hosts that is always on:
kopf runs it only in the active replica of a peered pair, and whichever
Host's timer fires first takes each pass, at most once its interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from vapor.model import GROUP, VERSION

from ._state import Memo
from .drain import reconcile_host
from .ledger import vm_key
from .migration import done_with, reconcile
from .placer import unplaced
from .settings import MIGRATION_INTERVAL, RETRY_INTERVAL

log = logging.getLogger("vapor.operator.rechecks")

_last: dict[str, float] = {}  # pass name: when it last began (time.monotonic)


async def unplaced_vms(memo: Memo) -> None:
    """Try again to place every VM no host has taken yet; label a placed one a failed write left unlabelled."""
    memo.placement.want(vm_key(vm) for vm in memo.books.vms() if unplaced(vm))
    await memo.placement.relabel()


async def migrations_in_flight(memo: Memo) -> None:
    """Look again at every Migration the operator is not done with."""
    ledger = memo.books
    for m in ledger.migrations():
        if not done_with(m):
            await reconcile(ledger, m.metadata.namespace or "", m.name)


async def draining_hosts(memo: Memo) -> None:
    """Keep every drain's progress true while its migrations run."""
    for host in memo.books.hosts():
        if host.spec.maintenance or (host.status is not None and host.status.drain is not None):
            await reconcile_host(memo.books, host.name)


PASSES: dict[str, tuple[float, Callable[[Memo], Awaitable[None]]]] = {
    "placement": (RETRY_INTERVAL, unplaced_vms),
    "migrations": (MIGRATION_INTERVAL, migrations_in_flight),
    "drains": (MIGRATION_INTERVAL, draining_hosts),
}


@kopf.timer(GROUP, VERSION, "hosts", interval=min(RETRY_INTERVAL, MIGRATION_INTERVAL))
async def recheck(memo: Memo, **_: Any) -> None:
    """Take each pass that is due (the first Host timer to fire takes it; the others find it taken)."""
    now = time.monotonic()
    for name, (interval, run) in PASSES.items():
        if now - _last.get(name, float("-inf")) < interval * 0.9:
            continue
        _last[name] = now
        try:
            await run(memo)
        except Exception:  # the next pass tries again
            log.exception("the %s pass failed", name)
