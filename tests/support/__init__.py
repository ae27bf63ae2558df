"""Helpers that run real parts for tests: libvirtd with virtlogd, the Vapor agent."""
