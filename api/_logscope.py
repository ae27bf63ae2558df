"""Who may read a host's logs: admins read everything; viewers only the units the chart allows them.

A journal holds what must not reach every user who can log in: sshd's
"Invalid user <a password typed as a name>", sudo's command lines, the
gateway's own login lines. So ``GET /logs`` and ``/ws/logs`` need role
admin, except for a viewer asking for one unit of ``VAPOR_VIEWER_LOG_UNITS``
(chart ``gateway.viewerLogUnits``; empty by default: viewers read no logs).
Container logs are admin-only (a container is no unit). ``sshd`` and
``sshd.service`` name the same unit.
"""

from __future__ import annotations

from vapor.agentapi.errors import PERMISSION_DENIED

from ._errors import APIError
from ._state import gateway, names


def _unit(name: str) -> str:
    return name.strip().removesuffix(".service")


def viewer_units() -> frozenset[str]:
    """The units viewers may read (VAPOR_VIEWER_LOG_UNITS)."""
    return frozenset(_unit(name) for name in names(gateway().config.get("VIEWER_LOG_UNITS")))


def check_log_access(username: str, role: str, unit: str | None) -> None:
    """PERMISSION_DENIED unless ``role`` is admin or ``unit`` is one viewers may read."""
    if role == "admin":
        return
    allowed = viewer_units()
    if unit is not None and _unit(unit) in allowed:
        return
    if not allowed:
        message = f"user {username!r} has role viewer; logs need role admin"
    else:
        listed = ", ".join(sorted(allowed))
        message = f"user {username!r} has role viewer and may read only the logs of the units {listed}: name one"
    raise APIError(403, PERMISSION_DENIED, message)
