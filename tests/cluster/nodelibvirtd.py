"""A libvirtd of a kubelet node's own, started on the node as a real host runs it.

Its folders are the node's own copies of the machine's libvirt folders
(tests/support/hosts.py ``prepare``, as the migration testbed's hosts make
them), bound over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt in the node's mount namespace, where
containerd, the kubelet and so the agent pod live: the agent's hostPath
/var/run/libvirt is this daemon's socket, not the machine's. The daemon runs
in the node's network namespace and listens for migrations at the node's
address (plain TCP: the chart's ``migration.transport: tcp``). The test
reaches it through its socket's folder on the machine (``uri``).
"""

from __future__ import annotations

import subprocess

import libvirt

from vapor.devenv import Node

from ..support.hosts import MOUNTS, Host, prepare, stop, wait_started
from ..support.libvirtd import make_kvm_usable


class NodeLibvirtd:
    """The node's libvirtd: ``start()``, ``connect()``, ``stop()`` (destroys its domains first)."""

    def __init__(self, node: Node, timeout: float = 60.0) -> None:
        self.node = node
        self.host = Host(node.index, node.netns, node.address, node.root / "libvirt", "tcp")
        self.timeout = timeout

    @property
    def uri(self) -> str:
        """How the machine (the test) reaches this libvirtd."""
        return self.host.uri

    def start(self) -> NodeLibvirtd:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # failures reach the tests as exceptions
        make_kvm_usable()
        prepare(self.host)
        root = self.host.root
        binds = " && ".join(f"mount --bind {root / m} /{m}" for m in MOUNTS)
        script = f"{binds} && exec libvirtd --listen -f /etc/libvirt/libvirtd.conf -p {root / 'libvirtd.pid'}"
        with (root / "libvirtd.out").open("wb") as out:
            self.host.process = subprocess.Popen(
                [*self.node.enter(), "sh", "-c", script], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_started(self.host, self.timeout)
        except BaseException:
            stop(self.host)
            raise
        return self

    def connect(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    def stop(self) -> None:
        stop(self.host)

    def __enter__(self) -> NodeLibvirtd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
