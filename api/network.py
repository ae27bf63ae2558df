"""/api/v1/network: the host's interfaces, read from the Host's status and changed through its spec.

Every write goes into the Host's ``spec.interfaces`` (server-side apply as
the user's field manager ``vapor-gateway:<user>``), so ``kubectl get host -o
yaml`` and a GitOps repository see the same configuration; the node's agent
applies it and reports ``NetworkConfigured`` for that generation, which the
endpoint waits for before it answers. Host-scoped: ``?host=<id or name>``
(see _hostscope).

Safety: the interface that carries the node's route to the API server (the
agent reports it as ``status.apiInterface``) is not brought down or
readdressed unless ``?force=true``; and if a change still cuts the node off,
the agent puts the old configuration back and the answer says so.
``?dry_run=true`` runs the same checks and a server-side dry run, and says
what would change without changing anything.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, NOT_FOUND, TIMEOUT
from vapor.kube import KubeError
from vapor.model import Condition, Host, HostSpec, MetadataPatch, names
from vapor.model.host import INTERFACE_NAME_PATTERN, InterfaceSpec, InterfaceStatus

from ._bodyless import NoBody, optional_body
from ._errors import APIError
from ._guard import current_user, require
from ._hostscope import HOST_PARAMETER_HELP, scoped_host
from ._schema import Failure, Success
from ._state import gateway
from ._writes import as_user, field_manager

blueprint = Blueprint("network", __name__, url_prefix="/api/v1/network")

WAIT_SECONDS = 30.0
MAX_NETMASK = {4: 32, 6: 128}


# -- request and answer shapes -------------------------------------------------------------
class InterfaceList(BaseModel):
    """The contract's list of interfaces."""

    interfaces: list[InterfaceStatus]


class HostQuery(BaseModel):
    """Which host (see the module's description)."""

    host: str | None = Field(default=None, max_length=253, description=HOST_PARAMETER_HELP)


class WriteQuery(HostQuery):
    """Which host, and how careful to be."""

    dry_run: bool = Field(default=False, description="Check and say what would change; change nothing.")
    force: bool = Field(
        default=False,
        description=(
            "Allow bringing down or readdressing the interface that carries the node's route to the API server."
        ),
    )


class AddressQuery(WriteQuery):
    """The address to remove (DELETE .../address)."""

    address: str = Field(max_length=64, description="The address to remove, for example 192.168.1.100.")
    netmask: int | str = Field(description="Its prefix length (24) or dotted netmask (255.255.255.0).")


class AddressRequest(BaseModel):
    """An address for an interface, and optionally the default gateway through it."""

    model_config = {"extra": "forbid"}

    address: str = Field(max_length=64, description="IPv4 or IPv6 address, for example 192.168.1.100.")
    netmask: int | str = Field(description="Prefix length (24) or dotted netmask (255.255.255.0).")
    gateway: str | None = Field(
        default=None, max_length=64, description="Default gateway through this interface, inside the address's subnet."
    )

    @field_validator("netmask", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("netmask must be a prefix length or a dotted netmask")
        return value


class NetworkChange(BaseModel):
    """What a write did, or with ?dry_run=true would do."""

    message: str = Field(description="What happened, for example 'Interface eth0 brought up successfully'.")
    dry_run: bool | None = Field(default=None, description="True when nothing was changed.")
    changes: list[str] | None = Field(default=None, description="With ?dry_run=true: the changes the host would see.")
    interface: InterfaceSpec | None = Field(default=None, description="The interface's desired state as written.")


# -- checks -------------------------------------------------------------------------------
def _bad(message: str) -> APIError:
    return APIError(400, INVALID_INPUT, message)


def cidr_of(address: str, netmask: int | str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """address/netmask as an interface address; INVALID_INPUT naming what is wrong."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        raise _bad(f"address {address!r} is not an IPv4 or IPv6 address") from None
    if ip.is_unspecified or ip.is_multicast or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
        raise _bad(f"address {address!r} cannot be given to an interface")
    if isinstance(netmask, str):
        text = netmask.strip()
        if text.isdigit():
            netmask = int(text)
        elif ip.version == 4:
            try:
                prefix = ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
            except ValueError:
                raise _bad(f"netmask {netmask!r} is not a prefix length nor a dotted netmask") from None
            netmask = prefix
        else:
            raise _bad(f"netmask {netmask!r} must be a prefix length (0 to 128) for an IPv6 address")
    if not 1 <= netmask <= MAX_NETMASK[ip.version]:
        raise _bad(f"netmask {netmask} is out of range for IPv{ip.version} (1 to {MAX_NETMASK[ip.version]})")
    return ipaddress.ip_interface(f"{ip}/{netmask}")


def check_gateway(gateway_text: str, cidr: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> str:
    """The gateway, if it can route for ``cidr``; INVALID_INPUT otherwise."""
    try:
        gw = ipaddress.ip_address(gateway_text.strip())
    except ValueError:
        raise _bad(f"gateway {gateway_text!r} is not an IPv4 or IPv6 address") from None
    if gw.version != cidr.version:
        raise _bad(f"gateway {gw} is IPv{gw.version} but the address is IPv{cidr.version}")
    if gw not in cidr.network:
        raise _bad(f"gateway {gw} is not inside the address's subnet {cidr.network}")
    if gw == cidr.ip:
        raise _bad(f"gateway {gw} is the interface's own address")
    if (
        cidr.version == 4
        and cidr.network.prefixlen < 31
        and gw in (cidr.network.network_address, cidr.network.broadcast_address)
    ):
        raise _bad(f"gateway {gw} is the network or broadcast address of {cidr.network}")
    return str(gw)


def _interface(host: Host, name: str) -> InterfaceStatus:
    for iface in (host.status.interfaces if host.status else None) or []:
        if iface.name == name:
            return iface
    raise APIError(404, NOT_FOUND, f"host {host.name} has no network interface named {name!r}")


def _name(name: str) -> str:
    if not re.match(INTERFACE_NAME_PATTERN, name):
        raise _bad(f"{name!r} is not an interface name (1 to 15 letters, digits and _.:@-)")
    return name


def _desired(host: Host, name: str) -> InterfaceSpec | None:
    return next((i for i in host.spec.interfaces or [] if i.name == name), None)


def _guard(host: Host, name: str, what: str, force: bool) -> None:
    if host.status and host.status.api_interface == name and not force:
        raise APIError(
            409,
            CONFLICT,
            f"interface {name} carries host {host.name}'s route to the Kubernetes API server; {what} it could cut "
            "the node off (add ?force=true to do it anyway: the agent puts the old configuration back if it does)",
        )


# -- writing and waiting ---------------------------------------------------------------------
def _listed(host: Host, entry: InterfaceSpec) -> list[InterfaceSpec]:
    """spec.interfaces with ``entry`` in place of its namesake (a None field is left out: the API server drops it)."""
    return [*(i for i in host.spec.interfaces or [] if i.name != entry.name), entry]


async def _write(host: Host, entry: InterfaceSpec, dry_run: bool) -> int:
    """Server-side apply of spec.interfaces with ``entry`` as the user; the Host's new generation.

    The whole list goes in the apply: entries (and fields) this user's field
    manager applied before and left out would otherwise be removed.
    """
    written = (
        await as_user()
        .resources(Host)
        .apply_spec(
            host.name,
            HostSpec.partial(interfaces=_listed(host, entry)),
            field_manager=field_manager(current_user().username),
            dry_run=dry_run,
        )
    )
    return int(written.metadata.generation or 0)


async def _replace(host: Host, entry: InterfaceSpec) -> int:
    """Merge patch of the whole spec.interfaces list (only way to drop an address another manager owns)."""
    try:
        updated = (
            await as_user()
            .resources(Host)
            .patch(
                host.name,
                metadata=MetadataPatch(resource_version=host.metadata.resource_version),
                spec=HostSpec.partial(interfaces=_listed(host, entry)),
                field_manager=field_manager(current_user().username),
            )
        )
    except KubeError as exc:
        if exc.status == 409:
            raise APIError(409, CONFLICT, f"host {host.name} changed meanwhile; try again") from None
        raise
    return int(updated.metadata.generation or 0)


async def _settled(host_name: str, generation: int) -> Host:
    """Wait for the agent's NetworkConfigured of ``generation`` (or later); errors for a failure or timeout."""
    cache = gateway().hosts

    def configured() -> Condition | None:
        host = cache.get(host_name)
        return host.condition(names.ConditionType.NETWORK_CONFIGURED) if host is not None else None

    def done() -> bool:
        cond = configured()
        return cond is not None and (cond.observed_generation or 0) >= generation

    wait = float(gateway().config.get("NETWORK_WAIT", WAIT_SECONDS))
    if not await cache.wait_for(done, wait):
        raise APIError(
            504,
            TIMEOUT,
            f"the agent of host {host_name} did not report generation {generation} of its network within "
            f"{wait:g} s; the change is recorded in the Host's spec and will be applied when the agent is back",
        )
    host, cond = cache.get(host_name), configured()
    assert host is not None and cond is not None
    if cond.status != "True":
        word = "rolled the change back" if cond.reason == "RolledBack" else f"could not apply it ({cond.reason})"
        raise APIError(409, CONFLICT, f"the agent of host {host_name} {word}: {cond.message}")
    return host


async def _change(
    host: Host, entry: InterfaceSpec, changes: list[str], message: str, query: WriteQuery, *, replace: bool = False
) -> Success[NetworkChange]:
    if query.dry_run:
        await _write(host, entry, dry_run=True)  # the API server's own checks (schema, CEL rules)
        verb = message.replace(" successfully", "").replace("brought", "would be brought")
        return Success[NetworkChange](
            data=NetworkChange(
                message=f"dry run: {verb}" if changes else f"dry run: nothing to change on {entry.name}",
                dry_run=True,
                changes=changes,
                interface=entry,
            )
        )
    generation = await (_replace(host, entry) if replace else _write(host, entry, dry_run=False))
    await _settled(host.name, generation)
    return Success[NetworkChange](data=NetworkChange(message=message, interface=entry))


def _addresses_now(host: Host, name: str, observed: InterfaceStatus) -> list[str]:
    """The addresses the entry must list so that adding one keeps the others (link-local left to the kernel)."""
    desired = _desired(host, name)
    if desired is not None and desired.addresses is not None:
        return list(desired.addresses)
    return [a for a in observed.addresses or [] if not ipaddress.ip_interface(a).ip.is_link_local]


# -- endpoints ------------------------------------------------------------------------------
@blueprint.get("/interfaces")
@require("viewer")
@tag(["network"])
@validate_querystring(HostQuery)
@validate_response(Success[InterfaceList])
@document_response(Failure, 400)
@document_response(Failure, 404)
async def list_interfaces(query_args: HostQuery) -> Success[InterfaceList]:
    """Every network interface of the host with its configuration and counters, as its agent reports them."""
    host = scoped_host(query_args.host)
    return Success[InterfaceList](data=InterfaceList(interfaces=list((host.status and host.status.interfaces) or [])))


async def _set_state(name: str, state: Literal["up", "down"], query: WriteQuery) -> Success[NetworkChange]:
    host = scoped_host(query.host)
    observed = _interface(host, _name(name))
    if state == "down":
        _guard(host, name, "bringing it down", query.force)
    desired = _desired(host, name) or InterfaceSpec(name=name)
    entry = desired.model_copy(update={"state": state})
    changes = [] if observed.state == state and desired.state in (None, state) else [f"set link {state}"]
    return await _change(host, entry, changes, f"Interface {name} brought {state} successfully", query)


@blueprint.put("/interfaces/<name>/up")
@require("admin")
@tag(["network"])
@optional_body(NoBody)
@validate_querystring(WriteQuery)
@validate_response(Success[NetworkChange])
@document_response(Failure, 404)
async def interface_up(name: str, data: NoBody, query_args: WriteQuery) -> Success[NetworkChange]:
    """Bring an interface up (written as state: up in the Host's spec.interfaces)."""
    return await _set_state(name, "up", query_args)


@blueprint.put("/interfaces/<name>/down")
@require("admin")
@tag(["network"])
@optional_body(NoBody)
@validate_querystring(WriteQuery)
@validate_response(Success[NetworkChange])
@document_response(Failure, 409)
async def interface_down(name: str, data: NoBody, query_args: WriteQuery) -> Success[NetworkChange]:
    """Bring an interface down; refused for the interface carrying the node's API traffic unless ?force=true."""
    return await _set_state(name, "down", query_args)


@blueprint.post("/interfaces/<name>/address")
@require("admin")
@tag(["network"])
@validate_querystring(WriteQuery)
@validate_request(AddressRequest)
@validate_response(Success[NetworkChange])
@document_response(Failure, 400)
async def add_address(name: str, data: AddressRequest, query_args: WriteQuery) -> Success[NetworkChange]:
    """Add an address to an interface (kept with its others), and optionally make its gateway the default route."""
    host = scoped_host(query_args.host)
    observed = _interface(host, _name(name))
    cidr = cidr_of(data.address, data.netmask)
    gateway_ip = check_gateway(data.gateway, cidr) if data.gateway is not None else None
    _guard(host, name, "readdressing", query_args.force)
    if gateway_ip is not None:
        holder = next((i.name for i in host.spec.interfaces or [] if i.gateway and i.name != name), None)
        if holder is not None:
            raise _bad(f"interface {holder} already carries the default gateway of host {host.name}; remove it first")
    addresses = _addresses_now(host, name, observed)
    changes = [] if str(cidr) in addresses else [f"add address {cidr}"]
    if gateway_ip is not None and (_desired(host, name) or InterfaceSpec(name=name)).gateway != gateway_ip:
        changes.append(f"default route via {gateway_ip} dev {name}")
    desired = _desired(host, name) or InterfaceSpec(name=name)
    update: dict[str, Any] = {"addresses": sorted({*addresses, str(cidr)})}
    if gateway_ip is not None:
        update["gateway"] = gateway_ip
    entry = desired.model_copy(update=update)
    return await _change(
        host, entry, changes, f"Address {cidr} configured on interface {name} successfully", query_args
    )


@blueprint.delete("/interfaces/<name>/address")
@require("admin")
@tag(["network"])
@validate_querystring(AddressQuery)
@validate_response(Success[NetworkChange])
@document_response(Failure, 404)
async def remove_address(name: str, query_args: AddressQuery) -> Success[NetworkChange]:
    """Remove an address (?address=&netmask=) from an interface; its default route goes with it."""
    host = scoped_host(query_args.host)
    observed = _interface(host, _name(name))
    cidr = cidr_of(query_args.address, query_args.netmask)
    addresses = _addresses_now(host, name, observed)
    if str(cidr) not in addresses:
        raise APIError(404, NOT_FOUND, f"interface {name} of host {host.name} has no address {cidr}")
    _guard(host, name, "readdressing", query_args.force)
    current = _desired(host, name) or InterfaceSpec(name=name)
    kept = [a for a in addresses if a != str(cidr)]
    gateway_ip = current.gateway
    if gateway_ip and not any(ipaddress.ip_address(gateway_ip) in ipaddress.ip_interface(a).network for a in kept):
        gateway_ip = None  # nothing left to reach it through
    entry = current.model_copy(update={"addresses": kept, "gateway": gateway_ip})
    return await _change(
        host,
        entry,
        [f"remove address {cidr}"],
        f"Address {cidr} removed from interface {name} successfully",
        query_args,
        replace=not query_args.dry_run,
    )
