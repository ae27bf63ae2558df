"""What the gateway's VM caches hold, measured by tracemalloc in this process with the gateway's own classes.

The same caches as a running gateway's (``vapor.gateway._state.Gateway``): the
VM watch cache (parsed models), the list body's encoded pieces (one per VM,
shared with /ws/vms) and the whole body, plain and gzip, and the page index.
Each is filled from the same API server in turn and its growth in traced
bytes is reported, in all and per VM.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from vapor.gateway._bodies import ListBody
from vapor.gateway._views import vm_view
from vapor.gateway._vmpages import VmPages
from vapor.kube import Informer, Kube
from vapor.model import VirtualMachine


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def cache_sizes(kubeconfig: Path) -> list[tuple[str, int]]:
    """(what, bytes) for each of the gateway's VM caches, filled from the API server at ``kubeconfig``."""
    sizes: list[tuple[str, int]] = []
    tracemalloc.start()
    try:
        async with await Kube.connect(str(kubeconfig)) as kube:
            start = _traced()
            informer: Informer[VirtualMachine] = Informer(
                kube, VirtualMachine, managed_fields=False
            )  # as the gateway's
            await informer.start(timeout=300)
            sizes.append(("watch cache (VM models)", _traced() - start))
            bodies, pages = ListBody(informer, vm_view, "vms"), VmPages(informer)
            mark = _traced()
            for vm in informer.items():
                bodies.encoded(vm)
            sizes.append(("encoded views (list pieces, /ws/vms)", _traced() - mark))
            mark = _traced()
            bodies.get()
            sizes.append(("whole-list body", _traced() - mark))
            mark = _traced()
            bodies.get(gzipped=True)
            sizes.append(("whole-list body, gzip", _traced() - mark))
            mark = _traced()
            pages.page((None, None, None), limit=100, after=None)
            sizes.append(("page index (sorted keys per filter)", _traced() - mark))
            await informer.stop()
    finally:
        tracemalloc.stop()
    return sizes
