"""Load only the parts of two libraries the agent uses, not everything their packages' ``__init__`` imports.

``import pyroute2`` loads every netlink family it knows (NDB with sqlite3,
IPDB, IPVS, nftables, WireGuard, 9P...), and any ``import kubernetes.aio.*``
first runs ``kubernetes/__init__``, which loads the whole synchronous client
with requests, oauthlib and websocket-client. The agent needs
``pyroute2.iproute``, ``pyroute2.netns`` and ``pyroute2.netlink``, and
``kubernetes.aio``'s client, config and watch: about 15 MiB of its resident
memory went to the rest.

:func:`bare_packages` registers those packages as bare ones (their folder on
the search path, their ``__init__`` not run), so importing a submodule loads
that submodule and what it imports itself. It is called once, first thing in
the agent's process (``python -m vapor.agent``), before anything imports them;
a package already imported is left as it is. The agent's code imports from
the submodules (``from pyroute2.iproute import IPRoute``), which name the
same objects with or without this. A name only the package's ``__init__``
defines (``from pyroute2 import IPRoute`` somewhere inside the library) runs
that ``__init__`` then, once: nothing breaks, it only costs the memory.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

PACKAGES = ("kubernetes", "kubernetes.aio", "pyroute2")


def bare_packages(names: tuple[str, ...] = PACKAGES) -> list[str]:
    """Register each package of ``names`` not imported yet as bare; the names registered."""
    done: list[str] = []
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        if parent:
            folders = getattr(sys.modules.get(parent), "__path__", None)
            spec = importlib.machinery.PathFinder.find_spec(name, folders) if folders else None
        else:
            spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        bare = importlib.machinery.ModuleSpec(name, None, is_package=True)
        bare.submodule_search_locations = list(spec.submodule_search_locations)
        module = importlib.util.module_from_spec(bare)
        if spec.origin:
            module.__getattr__ = _complete(module, spec.origin)  # type: ignore[method-assign]
        sys.modules[name] = module
        if parent:
            setattr(sys.modules[parent], child, module)
        done.append(name)
    return done


def _complete(module: ModuleType, init: str) -> Callable[[str], object]:
    """The bare package's ``__getattr__``: a name it lacks runs the package's own ``__init__`` (once), then is found."""

    def __getattr__(name: str) -> object:
        if name.startswith("__") or "__getattr__" not in vars(module):
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        if importlib.machinery.PathFinder.find_spec(f"{module.__name__}.{name}", module.__path__) is not None:
            return importlib.import_module(f"{module.__name__}.{name}")  # a submodule (``from pyroute2 import config``)
        del module.__getattr__  # the __init__ may define its own
        importlib.machinery.SourceFileLoader(module.__name__, init).exec_module(module)
        return getattr(module, name)

    return __getattr__
