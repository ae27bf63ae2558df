"""libvirt's migration job, decided without I/O: the flags of a spec, progress from job statistics, when to abort."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import libvirt  # type: ignore[import-untyped]

from vapor.model import Migration
from vapor.model.migration import MigrationProgress

_GIB = 2**30
POSTCOPY_AFTER_ITERATIONS = 3  # memory passes before a post-copy migration switches over


def now() -> datetime:
    """The time as the status writes it: UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def migration_flags(m: Migration, active: bool, tls: bool = True) -> int:
    """The libvirt flags for a Migration's spec; ``active`` says whether the domain runs now.

    ``tls``: the hosts migrate over qemu+tls, and QEMU's own migration stream (memory, and disks for
    copyStorage) is encrypted too (VIR_MIGRATE_TLS); an offline migration sends no stream.
    """
    spec = m.spec
    flags: int = libvirt.VIR_MIGRATE_PEER2PEER
    if not active:
        return int(flags | libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PERSIST_DEST)
    if tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if spec.live:
        flags |= libvirt.VIR_MIGRATE_LIVE
        if spec.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if spec.post_copy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if spec.persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
    if spec.copy_storage == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    elif spec.copy_storage == "incremental":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    # UNDEFINE_SOURCE is done by the agent after reading the finished job's statistics (downtime).
    return flags


_TLS_FAILURE = ("certificate", "tls", "gnutls", "handshake")


def failure_reason(message: str) -> str:
    """The reason of a failed job: TLSFailed when libvirt says the peers' certificates or handshake failed."""
    low = message.lower()
    return "TLSFailed" if any(word in low for word in _TLS_FAILURE) else "Failed"


def job_running(stats: dict[str, Any]) -> bool:
    """Whether libvirt's job statistics describe a job (of any kind) under way."""
    return bool(stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE)


def progress_of(stats: dict[str, Any]) -> MigrationProgress:
    """status.progress from libvirt's job statistics."""
    total = stats.get("data_total") or 0
    remaining = stats.get("data_remaining")
    percent = 0
    if total and remaining is not None:
        percent = max(0, min(100, int((total - remaining) * 100 / total)))
    found = {
        "data_total_bytes": stats.get("data_total"),
        "data_processed_bytes": stats.get("data_processed"),
        "data_remaining_bytes": remaining,
        "memory_iteration": stats.get("memory_iteration"),
        "memory_dirty_rate": stats.get("memory_dirty_rate"),
    }
    counts = {key: int(value) for key, value in found.items() if value is not None}
    return MigrationProgress(percent=percent, updated_at=now(), **counts)


def completion_limit(m: Migration, memory_kib: int) -> float:
    """Seconds the whole migration may take: completionTimeoutPerGiB for each GiB of guest memory."""
    return m.spec.completion_timeout_per_gib * max(memory_kib * 1024 / _GIB, 1 / 64)


class Watch:
    """What the source has seen of one job: whether it progresses, and whether to abort it."""

    def __init__(self, m: Migration, memory_kib: int, started: float) -> None:
        self.spec = m.spec
        self.started = started
        self.limit = completion_limit(m, memory_kib)
        self.best: tuple[float, int] | None = None  # least data remaining so far, highest memory iteration
        self.last_progress = started
        self.postcopy_asked = False

    def saw(self, stats: dict[str, Any], at: float) -> bool:
        """Note one sample of job statistics; whether it is the moment to switch to post-copy."""
        remaining = stats.get("data_remaining")
        iteration = stats.get("memory_iteration") or 0
        best = self.best
        if remaining is not None and (best is None or remaining < best[0] or iteration > best[1]):
            self.best = (min(remaining, best[0]) if best else remaining, max(iteration, best[1] if best else 0))
            self.last_progress = at
        if self.spec.post_copy and not self.postcopy_asked and iteration >= POSTCOPY_AFTER_ITERATIONS:
            self.postcopy_asked = True
            return True
        return False

    def abort(self, current: Migration | None, at: float) -> tuple[str, str] | None:
        """(reason, message) when the job must be aborted now: cancelled, too slow in all, or stuck."""
        if current is not None and (current.spec.cancel or current.metadata.deletion_timestamp is not None):
            return "Aborted", "cancelled by the user"
        if at - self.started > self.limit:
            per_gib = self.spec.completion_timeout_per_gib
            return "CompletionTimeout", f"not done after {int(self.limit)} s ({per_gib} s per GiB)"
        if at - self.last_progress > self.spec.progress_timeout_seconds:
            return "ProgressTimeout", f"no progress for {self.spec.progress_timeout_seconds} s"
        return None
