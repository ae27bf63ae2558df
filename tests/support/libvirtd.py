"""A real libvirtd for tests (see vapor.devenv.libvirtd, which ``make dev`` uses too)."""

from vapor.devenv.libvirtd import SYSTEM_URI, Libvirtd, LibvirtdError, make_kvm_usable

__all__ = ["SYSTEM_URI", "Libvirtd", "LibvirtdError", "make_kvm_usable"]
