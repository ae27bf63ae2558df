"""Which client a request comes from: the socket's peer, or the address a trusted proxy forwarded.

Behind an ingress controller or a load balancer every request arrives from
the proxy, so the per-client limits (requests per minute, WebSockets at
once) would count all users as one. ``VAPOR_TRUSTED_PROXIES`` lists the
networks of the proxies in front of the gateway (comma-separated CIDRs, e.g.
the ingress controller's pod network). Only when the peer is one of them is
``X-Forwarded-For`` read, from the right: each hop a trusted proxy added is
skipped, and the first address not in a trusted network is the client. A
header a client wrote itself therefore cannot move it into another's
bucket: its own proxy's entry, to the right, is what counts. When every hop
is in a trusted network, the rightmost one is the client (the address our
proxy saw), never the leftmost, which whoever sent the request wrote.

Every address in the trusted networks is believed to be a proxy: name the
proxies' networks only, not those of clients (the chart requires them when
its Ingress is on).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from quart import Quart, current_app
from werkzeug.datastructures import Headers

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EXTENSION = "vapor.trusted_proxies"


def parse_networks(text: str | Iterable[str] | None) -> tuple[Network, ...]:
    """The networks of a comma-separated list of CIDRs or addresses; ValueError naming a bad one."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"VAPOR_TRUSTED_PROXIES: {item!r} is not an address or CIDR network") from None
    return tuple(networks)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def forwarded_client(peer: str, headers: Headers, networks: tuple[Network, ...]) -> str:
    """The client's address: ``peer``, or the rightmost untrusted X-Forwarded-For hop when ``peer`` is trusted.

    When every hop is trusted, the rightmost one.
    """
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for line in headers.getlist("X-Forwarded-For") for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:  # not an address: the proxy's header is broken, count the proxy
                return peer
    return str(ipaddress.ip_address(hops[-1])) if hops else peer


def install(app: Quart) -> None:
    """Read VAPOR_TRUSTED_PROXIES once, when the app is made: a bad entry stops the gateway from starting."""
    app.extensions[EXTENSION] = parse_networks(app.config.get("TRUSTED_PROXIES"))


def client_of(peer: str | None, headers: Headers) -> str:
    """``forwarded_client`` with the app's trusted networks."""
    return forwarded_client(peer or "", headers, current_app.extensions.get(EXTENSION, ()))
