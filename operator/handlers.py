"""Importing this module registers every handler of the operator with kopf."""

from . import health, scheduling, settings

__all__ = ["health", "scheduling", "settings"]
