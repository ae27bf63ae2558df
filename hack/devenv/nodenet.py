"""The nodes' network: a hub bridge in a namespace of its own, each node's namespace and the machine on it.

``make_hub`` makes a network namespace holding one bridge, on a /24 of
10.245.0.0/16 that no address of the machine is in, and a veth pair from the
machine to that bridge: the machine's end gets the /24's first address
(``Hub.host``), where the API server's forwarder listens for every node
(forward.py). ``join`` makes a node's namespace with its ``uplink`` on the
bridge at the address of its index (``Hub.address(index)``).

The kubelet, containerd, the CNI bridge and the pods all live in the node's
namespace, so the kubelet's probes reach pods directly and every interface
and rule the node makes goes away with ``ip netns delete``. Each node's pods
have a /24 of their own (``pod_subnet(index)``); ``route_pods`` sends the
other nodes' pod subnets to those nodes' uplink addresses over the bridge, so
pods reach pods and Services on any node without NAT. The machine keeps only
its veth's end while the nodes run (its connected /24 route, by which the API
server reaches the kubelets); no route or rule is added to the machine's
tables and none of its interfaces is touched.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
from dataclasses import dataclass

UPLINKS = ipaddress.IPv4Network("10.245.0.0/16")
UPLINK = "uplink"  # the veth's name inside a node's namespace
BRIDGE = "hub0"
PODS = ipaddress.IPv4Network("10.244.0.0/16")  # every node's pods (kube-proxy's clusterCIDR)


def pod_subnet(index: int) -> str:
    """The pods' /24 of the node ``index`` (the first node's is 10.244.0.0/24)."""
    return str(list(PODS.subnets(new_prefix=24))[index])


@dataclass(frozen=True)
class Hub:
    """The hub's namespace, the machine's end of its veth (``link``) and the /24 they share."""

    netns: str
    link: str
    subnet: str

    @property
    def host(self) -> str:
        """The machine's address on the hub (the forwarder to the API server listens there)."""
        return str(ipaddress.IPv4Network(self.subnet)[1])

    def address(self, index: int) -> str:
        """The uplink address of the node ``index``."""
        return str(ipaddress.IPv4Network(self.subnet)[index + 2])


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    listed = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [ipaddress.IPv4Interface(line.split()[3]).network for line in listed.splitlines()]


def _netns(name: str) -> None:
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def make_hub(netns: str, link: str) -> Hub:
    """Create the hub's namespace and bridge, and the machine's veth to it on a free /24."""
    used = _networks_in_use()
    candidates = list(UPLINKS.subnets(new_prefix=24))
    random.shuffle(candidates)
    subnet = next(net for net in candidates if not any(net.overlaps(other) for other in used))
    hub = Hub(netns, link, str(subnet))
    _netns(netns)
    _ip("-n", netns, "link", "add", BRIDGE, "type", "bridge")
    _ip("-n", netns, "link", "set", BRIDGE, "up")
    _ip("link", "add", link, "type", "veth", "peer", "name", "machine", "netns", netns)
    _ip("-n", netns, "link", "set", "machine", "master", BRIDGE, "up")
    _ip("addr", "add", f"{hub.host}/{subnet.prefixlen}", "dev", link)
    _ip("link", "set", link, "up")
    return hub


def join(hub: Hub, netns: str, port: str, index: int) -> str:
    """Create the node's namespace ``netns`` with its ``uplink`` on the hub's bridge; the node's address."""
    address = hub.address(index)
    prefix = ipaddress.IPv4Network(hub.subnet).prefixlen
    _netns(netns)
    _ip("-n", hub.netns, "link", "add", port, "type", "veth", "peer", "name", UPLINK, "netns", netns)
    _ip("-n", hub.netns, "link", "set", port, "master", BRIDGE, "up")
    _ip("-n", netns, "addr", "add", f"{address}/{prefix}", "dev", UPLINK)
    _ip("-n", netns, "link", "set", UPLINK, "up")
    return address


def _in(netns: str, *command: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {netns}: {done.stderr.strip()}")


def route_services(netns: str, service_cidr: str) -> None:
    """Inside ``netns``: Service addresses route out of the uplink; pods' traffic to the machine is masqueraded.

    kube-proxy rewrites a Service's address to an endpoint's (its own NAT
    rules, in this namespace); the route lets the node's own processes
    (host-network pods) reach the rewrite, and the masquerade gives the
    machine an address it can answer (it has no route back to the pods).
    Pods' traffic to other nodes' pods keeps its address (``route_pods``).
    """
    _in(netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    _in(netns, "ip", "route", "add", service_cidr, "dev", UPLINK)
    rule = ["-s", str(PODS), "!", "-d", str(PODS), "-o", UPLINK, "-j", "MASQUERADE"]
    _in(netns, "iptables", "-t", "nat", "-A", "POSTROUTING", *rule)


def route_pods(netns: str, peers: dict[str, str]) -> None:
    """Inside ``netns``: each other node's pod subnet (key) by way of that node's uplink address (value)."""
    for subnet, address in peers.items():
        _in(netns, "ip", "route", "add", subnet, "via", address, "dev", UPLINK)


def remove(netns: str) -> None:
    """Delete a namespace (a node's or the hub's) and every interface in it; the veths' other ends go too."""
    subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


def remove_link(link: str) -> None:
    """Delete the machine's end of the hub's veth if it is still there."""
    if subprocess.run(["ip", "link", "show", link], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
