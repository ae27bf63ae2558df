"""How a Migration's spec turns into libvirt's flags, and libvirt's job statistics into status.progress."""

from __future__ import annotations

import libvirt
import pytest

from vapor.agent.controllers.migration import migration_flags, progress_of
from vapor.model import Migration

pytestmark = pytest.mark.migration


def _migration(**spec: object) -> Migration:
    return Migration.model_validate({"metadata": {"name": "m", "namespace": "n"}, "spec": {"vmName": "vm", **spec}})


def test_defaults_are_a_live_persistent_peer_to_peer_move() -> None:
    flags = migration_flags(_migration(), active=True)
    assert flags == libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
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


def test_not_live_and_shut_off() -> None:
    paused_copy = migration_flags(_migration(live=False), active=True)
    assert not paused_copy & libvirt.VIR_MIGRATE_LIVE and not paused_copy & libvirt.VIR_MIGRATE_OFFLINE
    offline = migration_flags(_migration(live=True, persistent=False), active=False)
    assert offline & libvirt.VIR_MIGRATE_OFFLINE and offline & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert not offline & libvirt.VIR_MIGRATE_LIVE


def test_progress_from_job_stats() -> None:
    stats = {"type": 2, "data_total": 1000, "data_processed": 300, "data_remaining": 250, "memory_iteration": 2}
    progress = progress_of(stats)
    assert progress["percent"] == 75
    assert progress["dataRemainingBytes"] == 250 and progress["memoryIteration"] == 2
    assert "memoryDirtyRate" not in progress
    assert progress_of({"type": 2})["percent"] == 0
