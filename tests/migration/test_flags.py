"""How a Migration's spec turns into libvirt's flags, job statistics into status.progress, and when a job is aborted."""

from __future__ import annotations

import libvirt
import pytest

from vapor.agent.controllers.migration.job import Watch, failure_reason, migration_flags, progress_of
from vapor.model import Migration

pytestmark = pytest.mark.migration


def _migration(**spec: object) -> Migration:
    return Migration.model_validate({"metadata": {"name": "m", "namespace": "n"}, "spec": {"vmName": "vm", **spec}})


def test_defaults_are_a_live_persistent_peer_to_peer_move_over_tls() -> None:
    flags = migration_flags(_migration(), active=True)
    assert flags == (
        libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_TLS  # QEMU's own stream is encrypted, not only libvirtd's connection
    )
    # The agent undefines the source itself, after reading the job's downtime.
    assert not flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE


def test_every_option_reaches_the_flags() -> None:
    flags = migration_flags(
        _migration(copyStorage="incremental", autoConverge=True, postCopy=True, persistent=False), active=True
    )
    for flag in (libvirt.VIR_MIGRATE_NON_SHARED_INC, libvirt.VIR_MIGRATE_AUTO_CONVERGE, libvirt.VIR_MIGRATE_POSTCOPY):
        assert flags & flag
    assert not flags & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert migration_flags(_migration(copyStorage="all"), active=True) & libvirt.VIR_MIGRATE_NON_SHARED_DISK


def test_tcp_leaves_the_stream_plain_and_a_shut_off_domain_sends_none() -> None:
    assert not migration_flags(_migration(), active=True, tls=False) & libvirt.VIR_MIGRATE_TLS
    assert not migration_flags(_migration(), active=False) & libvirt.VIR_MIGRATE_TLS


def test_a_refused_certificate_has_its_own_reason() -> None:
    assert failure_reason("authentication failed: Failed to verify peer's certificate") == "TLSFailed"
    assert failure_reason("operation failed: guest CPU doesn't match specification") == "Failed"


def test_not_live_and_shut_off() -> None:
    paused_copy = migration_flags(_migration(live=False), active=True)
    assert not paused_copy & libvirt.VIR_MIGRATE_LIVE and not paused_copy & libvirt.VIR_MIGRATE_OFFLINE
    offline = migration_flags(_migration(live=True, persistent=False), active=False)
    assert offline & libvirt.VIR_MIGRATE_OFFLINE and offline & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert not offline & libvirt.VIR_MIGRATE_LIVE


def test_progress_from_job_stats() -> None:
    stats = {"type": 2, "data_total": 1000, "data_processed": 300, "data_remaining": 250, "memory_iteration": 2}
    progress = progress_of(stats)
    assert progress.percent == 75
    assert progress.data_remaining_bytes == 250 and progress.memory_iteration == 2
    assert "memoryDirtyRate" not in progress.to_apply()
    assert progress.to_apply()["dataRemainingBytes"] == 250
    assert progress_of({"type": 2}).percent == 0


def test_a_job_is_aborted_when_cancelled_too_slow_or_stuck() -> None:
    m = _migration(completionTimeoutPerGiB=10, progressTimeoutSeconds=5)
    watch = Watch(m, memory_kib=2 * 2**20, started=100.0)  # 2 GiB of guest memory: 20 s in all
    assert watch.abort(m, 101.0) is None
    assert watch.abort(_migration(cancel=True), 101.0) == ("Aborted", "cancelled by the user")
    assert watch.abort(m, 106.0) == ("ProgressTimeout", "no progress for 5 s")
    watch.saw({"data_remaining": 900, "memory_iteration": 1}, 104.0)  # less to copy: progress
    watch.saw({"data_remaining": 950, "memory_iteration": 1}, 108.0)  # more again: none
    assert watch.abort(m, 108.5) is None
    assert watch.abort(m, 109.5) == ("ProgressTimeout", "no progress for 5 s")
    watch.saw({"data_remaining": 960, "memory_iteration": 2}, 118.0)  # a new memory pass counts as progress
    assert watch.abort(m, 121.0) == ("CompletionTimeout", "not done after 20 s (10 s per GiB)")


def test_post_copy_is_asked_for_once_after_three_memory_passes() -> None:
    watch = Watch(_migration(postCopy=True), memory_kib=2**20, started=0.0)
    assert [watch.saw({"memory_iteration": i}, float(i)) for i in (1, 2, 3, 4)] == [False, False, True, False]
    plain = Watch(_migration(), memory_kib=2**20, started=0.0)
    assert not plain.saw({"memory_iteration": 5}, 1.0)
