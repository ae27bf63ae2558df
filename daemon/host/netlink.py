"""The netlink side of host networking: read, plan and apply ``spec.interfaces`` with pyroute2.

Everything here is blocking and runs in a worker thread of the reconciler.
One :class:`Netlink` holds one IPRoute socket, in the agent's own network
namespace or in the one named by ``--netns``; it is reopened after an error.
Only the interfaces named in the spec are touched, and of those only the
fields the spec sets (state, MTU, addresses, default route).
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pyroute2.iproute import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
from pyroute2.netns import popns, pushns  # type: ignore[import-untyped]

from vapor.model.host import InterfaceSpec, InterfaceStatus

from . import inventory as _inventory

IFF_UP = 0x1
AF_INET6 = socket.AF_INET6
# Kernel errors that mean "this kind of link needs a driver the kernel does not have".
_NO_DRIVER = {errno.EOPNOTSUPP, errno.ENODEV, errno.ENOENT}


@dataclass
class Problem:
    """Why one interface of the spec could not be made as asked."""

    name: str
    reason: str  # CamelCase, for the NetworkConfigured condition
    message: str


@dataclass
class Outcome:
    """What one pass did (or, in a plan, would do)."""

    actions: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # interfaces an action changed


def _is_link_local(cidr: str) -> bool:
    return ipaddress.ip_interface(cidr).ip.is_link_local and ipaddress.ip_interface(cidr).version == 6


def _normalized(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr))


class Netlink:
    """One netlink socket in the managed network namespace, with the operations the reconciler needs."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def _socket(self) -> Any:
        if self._ipr is None:
            self._ipr = self._open()
        return self._ipr

    def close(self) -> None:
        """Close the socket (it is reopened on the next call)."""
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    def _run(self, work: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                return work(self._socket())
            except (OSError, NetlinkError):
                if self._ipr is not None:  # a broken socket: start again with a fresh one next time
                    self._ipr.close()
                    self._ipr = None
                raise

    # -- reading ----------------------------------------------------------------------
    def interfaces(self) -> list[InterfaceStatus]:
        """Every interface of the namespace, as the Host status lists them."""
        return list(self._run(_inventory.interfaces))

    def route_interface(self, address: str) -> str | None:
        """The interface the namespace's routing table sends traffic for ``address`` through."""

        def look(ipr: Any) -> str | None:
            try:
                routes = ipr.route("get", dst=address)
            except NetlinkError:
                return None  # no route at all
            oif = routes[0].get("oif") if routes else None
            if oif is None:
                return None
            links = ipr.get_links(oif)
            return str(links[0].get("ifname")) if links else None

        return self._run(look)  # type: ignore[no-any-return]

    def snapshot(self, names: list[str]) -> list[InterfaceSpec]:
        """The present configuration of ``names`` as a spec (what a rollback puts back)."""

        def take(ipr: Any) -> list[InterfaceSpec]:
            saved = []
            for name in names:
                index = _index(ipr, name)
                if index is None:
                    continue
                link = ipr.get_links(index)[0]
                gateways = [
                    r.get("gateway")
                    for family in (socket.AF_INET, AF_INET6)
                    for r in ipr.get_default_routes(family=family)
                    if r.get("oif") == index and r.get("gateway")
                ]
                saved.append(
                    InterfaceSpec(
                        name=name,
                        state="up" if link["flags"] & IFF_UP else "down",
                        mtu=link.get("mtu"),
                        addresses=sorted(_addresses(ipr, index)),
                        gateway=gateways[0] if gateways else None,
                    )
                )
            return saved

        return self._run(take)  # type: ignore[no-any-return]

    # -- changing ---------------------------------------------------------------------
    def apply(self, wanted: list[InterfaceSpec], *, dry_run: bool = False) -> Outcome:
        """Make the interfaces of ``wanted`` as asked (or, with ``dry_run``, only say what that takes)."""
        return self._run(lambda ipr: _apply(ipr, wanted, dry_run))  # type: ignore[no-any-return]

    # -- reaching the API server --------------------------------------------------------
    def reachable(self, host: str, port: int, timeout: float) -> bool:
        """Whether a TCP connection to host:port opens from inside the namespace."""
        moved = False
        try:
            if self.netns:
                pushns(self.netns)  # this thread only; the socket keeps the namespace it was made in
                moved = True
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError:
            return False
        finally:
            if moved:
                popns()
        sock.close()
        return True


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _addresses(ipr: Any, index: int) -> set[str]:
    """The interface's addresses in CIDR, without IPv6 link-local ones (the kernel owns those)."""
    out = set()
    for addr in ipr.get_addr(index=index):
        ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
        if ip:
            cidr = _normalized(f"{ip}/{addr['prefixlen']}")
            if not _is_link_local(cidr):
                out.add(cidr)
    return out


def _create(ipr: Any, spec: InterfaceSpec, outcome: Outcome, dry_run: bool) -> int | None:
    """Create a missing virtual interface of ``spec.kind``; its index, or None with a problem noted."""
    if spec.kind is None:
        outcome.problems.append(
            Problem(spec.name, "InterfaceNotFound", f"interface {spec.name} does not exist on the host")
        )
        return None
    outcome.actions.append(f"create {spec.kind} {spec.name}")
    outcome.touched.add(spec.name)
    if dry_run:
        return None
    try:
        ipr.link("add", ifname=spec.name, kind=spec.kind)
    except NetlinkError as exc:
        if exc.code in _NO_DRIVER:
            outcome.problems.append(
                Problem(
                    spec.name,
                    "DriverMissing",
                    f"cannot create {spec.kind} interface {spec.name}: the kernel has no {spec.kind!r} "
                    f"driver (load the module, or choose another kind)",
                )
            )
        else:
            outcome.problems.append(
                Problem(spec.name, "CreateFailed", f"cannot create {spec.kind} interface {spec.name}: {exc}")
            )
        return None
    return _index(ipr, spec.name)


def _step(outcome: Outcome, name: str, action: str, dry_run: bool, do: Callable[[], Any]) -> None:
    outcome.actions.append(action)
    outcome.touched.add(name)
    if dry_run:
        return
    try:
        do()
    except NetlinkError as exc:
        outcome.problems.append(Problem(name, "ApplyFailed", f"{action} on {name} failed: {exc}"))


def _apply(ipr: Any, wanted: list[InterfaceSpec], dry_run: bool) -> Outcome:
    outcome = Outcome()
    for spec in wanted:
        index = _index(ipr, spec.name)
        if index is None:
            index = _create(ipr, spec, outcome, dry_run)
        if index is not None:
            _apply_one(ipr, spec, index, outcome, dry_run)
    return outcome


def _apply_one(ipr: Any, spec: InterfaceSpec, index: int, outcome: Outcome, dry_run: bool) -> None:
    link = ipr.get_links(index)[0]
    is_up = bool(link["flags"] & IFF_UP)
    name = spec.name
    if spec.mtu is not None and link.get("mtu") != spec.mtu:
        _step(outcome, name, f"set mtu {spec.mtu}", dry_run, partial(ipr.link, "set", index=index, mtu=spec.mtu))
    if spec.addresses is not None:
        have = _addresses(ipr, index)
        want = {_normalized(a) for a in spec.addresses}
        for verb, cidrs in (("add", want - have), ("del", have - want)):
            for cidr in sorted(cidrs):
                ip = ipaddress.ip_interface(cidr)
                change = partial(ipr.addr, verb, index=index, address=str(ip.ip), prefixlen=ip.network.prefixlen)
                _step(outcome, name, f"{'add' if verb == 'add' else 'remove'} address {cidr}", dry_run, change)
    if spec.state is not None and is_up != (spec.state == "up"):
        _step(outcome, name, f"set link {spec.state}", dry_run, partial(ipr.link, "set", index=index, state=spec.state))
        is_up = spec.state == "up"
    if spec.gateway is not None and is_up:
        _gateway(ipr, outcome, spec, index, dry_run)


def _gateway(ipr: Any, outcome: Outcome, spec: InterfaceSpec, index: int, dry_run: bool) -> None:
    """Make the default route of the gateway's family go through ``spec.gateway`` on this interface."""
    gateway = str(spec.gateway)
    family = AF_INET6 if ipaddress.ip_address(gateway).version == 6 else socket.AF_INET
    routes = ipr.get_default_routes(family=family)
    if any(r.get("gateway") == gateway and r.get("oif") == index for r in routes) and len(routes) == 1:
        return
    outcome.actions.append(f"default route via {gateway} dev {spec.name}")
    outcome.touched.add(spec.name)
    if dry_run:
        return
    try:
        for route in routes:
            if not (route.get("gateway") == gateway and route.get("oif") == index):
                ipr.route("del", dst="default", family=family, gateway=route.get("gateway"), oif=route.get("oif"))
        ipr.route("replace", dst="default", family=family, gateway=gateway, oif=index)
    except NetlinkError as exc:
        reason = "GatewayUnreachable" if exc.code == errno.ENETUNREACH else "ApplyFailed"
        outcome.problems.append(
            Problem(spec.name, reason, f"cannot route the default gateway {gateway} through {spec.name}: {exc}")
        )


class EventWatch:
    """A thread that calls ``wake`` whenever a link, address or route changes in the namespace."""

    def __init__(self, netns: str | None, wake: Callable[[], None]) -> None:
        self.netns = netns
        self.wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netlink-events", daemon=True)

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (within a second)."""
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            except (OSError, NetlinkError):
                self._stop.wait(5)
                continue
            try:
                ipr.bind()
                while not self._stop.is_set():
                    ready, _, _ = select.select([ipr.fileno()], [], [], 1.0)
                    if ready:
                        ipr.get()
                        self.wake()
            except (OSError, NetlinkError, ValueError):
                self._stop.wait(1)
            finally:
                ipr.close()
