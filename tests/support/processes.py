"""Vapor components run as real processes by the tests (see vapor.devenv.processes)."""

from vapor.devenv.processes import Component as ComponentProcess

__all__ = ["ComponentProcess"]
