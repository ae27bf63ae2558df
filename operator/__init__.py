"""The Vapor operator (kopf): cluster-wide decisions, never touching a host.

It places VirtualMachines on Ready hosts with room, preferring those that
hold their Images (:mod:`vapor.rules.placement` decides, :mod:`.scheduling` wires it to
kopf), keeps each Image's finalizer, summary and fetch requests
(:mod:`.images`, decisions in :mod:`vapor.rules.images`), moves VMs (:mod:`.migration`,
:mod:`.migration_queue`, :mod:`.migration_status`; decisions in
:mod:`vapor.rules.migrations`), drains hosts in maintenance (:mod:`.drain`), keeps
each Host's Ready condition in step with its agent's Lease and marks the VMs
of a lost host Unknown (:mod:`.health`). Every decision that gives out room
reads one account of the fleet under one lock (:mod:`.ledger`). Entry point:
``vapor-operator`` (:mod:`.__main__`).
"""

if __name__ == "operator":  # pragma: no cover - only when the checkout's root is on sys.path
    # `python -m ...` run from the checkout puts its root first on sys.path, so
    # this folder can be found as Python's own `operator` module. Hand that name
    # back to the standard library, or everything importing `operator` breaks.
    import os as _os
    import sys as _sys
    from importlib.machinery import PathFinder as _PathFinder

    _spec = _PathFinder.find_spec("operator", [_os.path.dirname(_os.__file__)])
    if _spec is None or _spec.loader is None:
        raise ImportError("the standard library's operator module is missing")
    _std = type(_sys)("operator")
    _std.__spec__ = _spec
    _std.__file__ = _spec.origin
    _spec.loader.exec_module(_std)
    _sys.modules["operator"] = _std
