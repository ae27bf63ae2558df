"""Whether a host's agent is alive: its Lease, judged the way the node lifecycle controller does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Heartbeat:
    """The last renewal of a host's Lease."""

    renewed: dt.datetime
    duration: int  # seconds the renewal is good for


@dataclass(frozen=True)
class Verdict:
    """Ready or not, with the reason and message the Host's condition carries."""

    ready: bool
    reason: str
    message: str


def heartbeat_of(lease: Any) -> Heartbeat | None:
    """The heartbeat in a Lease object as kopf hands it over (a mapping), or None."""
    spec = lease.get("spec") or {}
    renew = spec.get("renewTime") or spec.get("acquireTime")
    if not renew:
        return None
    renewed = dt.datetime.fromisoformat(str(renew).replace("Z", "+00:00"))
    return Heartbeat(renewed=renewed, duration=int(spec.get("leaseDurationSeconds") or 40))


def judge(heartbeat: Heartbeat | None, now: dt.datetime) -> Verdict:
    """Ready while the last renewal is younger than the Lease's duration."""
    if heartbeat is None:
        return Verdict(False, "NoHeartbeat", "the host's agent has never renewed its Lease")
    age = (now - heartbeat.renewed).total_seconds()
    if age <= heartbeat.duration:
        return Verdict(True, "AgentHeartbeat", "the host's agent renews its Lease")
    return Verdict(
        False,
        "LeaseExpired",
        f"the host's agent last renewed its Lease {int(age)}s ago (it is good for {heartbeat.duration}s)",
    )
