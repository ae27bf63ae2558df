"""Importing this module registers every handler of the operator with kopf."""

from . import drain, health, images, migration, migration_certs, rechecks, scheduling, settings, snapshots

__all__ = [
    "drain",
    "health",
    "images",
    "migration",
    "migration_certs",
    "rechecks",
    "scheduling",
    "settings",
    "snapshots",
]
