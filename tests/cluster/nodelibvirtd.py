"""A libvirtd of a kubelet node's own, started on the node as a real host runs it.

Its folders are the node's own copies of the machine's libvirt folders
(tests/support/hosts.py ``prepare``, as the migration testbed's hosts make
them), bound over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt in the node's mount namespace, where
containerd, the kubelet and so the agent pod live: the agent's hostPath
/var/run/libvirt is this daemon's socket, not the machine's. The daemon runs
in the node's network namespace. It starts as a node's libvirtd runs before
Vapor is installed: its local socket only. ``serve_tls`` is the node admin's
step of daemon/README.md ("Migration transport") once the agent has its
certificate from the migration CA: the lines for libvirtd.conf and qemu.conf
(which the agent's log gives), then libvirtd restarted with ``--listen`` (its domains run on), so that it
takes migrations over TLS at the node's address. The test reaches it through
its socket's folder on the machine (``uri``).
"""

from __future__ import annotations

import subprocess

import libvirt

from vapor.devenv import Node

from ..support.hosts import Host, add_settings, libvirtd_script, prepare, stop, wait_started
from ..support.libvirtd import make_kvm_usable
from ..support.processes import terminate


class NodeLibvirtd:
    """The node's libvirtd: ``start()``, ``halt()``, ``serve_tls()``, ``connect()``, ``stop()`` (its domains too)."""

    def __init__(self, node: Node, timeout: float = 60.0) -> None:
        self.node = node
        self.host = Host(node.index, node.netns, node.address, node.root / "libvirt", "tls")
        self.timeout = timeout

    @property
    def uri(self) -> str:
        """How the machine (the test) reaches this libvirtd."""
        return self.host.uri

    def start(self) -> NodeLibvirtd:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # failures reach the tests as exceptions
        make_kvm_usable()
        prepare(self.host, listen=False)
        self._launch(libvirtd_script(self.host.root, listen=False))
        return self

    def halt(self) -> None:
        """Stop libvirtd (SIGTERM: its domains run on)."""
        terminate(self.host.process, 15)

    def serve_tls(self, libvirtd_conf: str, qemu_conf: str) -> None:
        """Add the lines that point libvirtd and QEMU at the agent's certificate, and start libvirtd listening."""
        self.halt()
        add_settings(self.host, libvirtd_conf, qemu_conf)
        self._launch(libvirtd_script(self.host.root, bind=False))  # its folders are bound in the node already

    def _launch(self, script: str) -> None:
        with (self.host.root / "libvirtd.out").open("wb") as out:
            self.host.process = subprocess.Popen(
                [*self.node.enter(), "sh", "-c", script], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_started(self.host, self.timeout)
        except BaseException:
            stop(self.host)
            raise

    def connect(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    def stop(self) -> None:
        stop(self.host)

    def __enter__(self) -> NodeLibvirtd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
