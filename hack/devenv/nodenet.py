"""A node's network namespace and its uplink to the machine (a veth pair on a /30 of 10.245.0.0/16).

The kubelet, containerd, the CNI bridge and the pods all live in the node's
namespace, so the kubelet's probes reach pods directly and every interface
and rule the node makes goes away with ``ip netns delete``. The machine keeps
only the veth's own end while the node runs (its connected /30 route, by
which the API server reaches the kubelet); no route or rule is added to the
machine's tables and none of its interfaces is touched.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
from dataclasses import dataclass

UPLINKS = ipaddress.IPv4Network("10.245.0.0/16")
UPLINK = "uplink"  # the veth's name inside the node's namespace


@dataclass(frozen=True)
class Uplink:
    """The veth pair: ``host`` (the machine's end, named ``link``) and ``node`` addresses."""

    link: str
    host: str
    node: str


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    listed = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [ipaddress.IPv4Interface(line.split()[3]).network for line in listed.splitlines()]


def make(netns: str, link: str) -> Uplink:
    """Create ``netns`` (loopback up) and a veth pair to it on a /30 no address of the machine is in."""
    used = _networks_in_use()
    candidates = list(UPLINKS.subnets(new_prefix=30))
    random.shuffle(candidates)
    subnet = next(net for net in candidates if not any(net.overlaps(other) for other in used))
    host, node = (str(address) for address in list(subnet.hosts())[:2])
    _ip("netns", "add", netns)
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("link", "add", link, "type", "veth", "peer", "name", UPLINK, "netns", netns)
    _ip("addr", "add", f"{host}/30", "dev", link)
    _ip("link", "set", link, "up")
    _ip("-n", netns, "addr", "add", f"{node}/30", "dev", UPLINK)
    _ip("-n", netns, "link", "set", UPLINK, "up")
    return Uplink(link, host, node)


def route_services(netns: str, service_cidr: str) -> None:
    """Inside ``netns``: Service addresses route out of the uplink, and what leaves by it is masqueraded.

    kube-proxy rewrites a Service's address to an endpoint's (its own NAT
    rules, in this namespace); the route lets the node's own processes
    (host-network pods) reach the rewrite, and the masquerade gives the
    machine an address it can answer (it has no route back to the pods).
    """
    nsexec = ["ip", "netns", "exec", netns]
    for command in (
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ["ip", "route", "add", service_cidr, "dev", UPLINK],
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", UPLINK, "-j", "MASQUERADE"],
    ):
        done = subprocess.run([*nsexec, *command], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} in {netns}: {done.stderr.strip()}")


def remove(netns: str, link: str) -> None:
    """Delete the namespace (its end of the veth and everything in it) and the machine's end if still there."""
    subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    subprocess.run(["ip", "link", "delete", link], capture_output=True)
