"""``POST /storage/format`` of the node-local API: format a device of this host, behind every guard of host/format.

The body is the contract's ``{device, filesystem, label}``. The guards read
the mount tables, swap, and the disk sources of every libvirt domain (a
fresh connection per request) plus the loop devices of the agent's images;
a refusal is the contract's error envelope with the guard's code, and each
format is recorded as an Event on the Host.
"""

from __future__ import annotations

import asyncio
from typing import Any

import libvirt  # type: ignore[import-untyped]
from aiohttp import web

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, NOT_FOUND, PERMISSION_DENIED
from vapor.kube import KubeError
from vapor.model import Host

from ..host import format as _format
from .context import NodeContext
from .envelope import NodeAPIError, ok

STATUS = {INVALID_INPUT: 400, NOT_FOUND: 404, CONFLICT: 409, PERMISSION_DENIED: 403}


def _format_now(node: NodeContext, device: str, filesystem: str, label: str | None) -> dict[str, Any]:
    try:
        conn = libvirt.open(node.config.libvirt_uri)
    except libvirt.libvirtError as exc:
        raise _format.Refused(CONFLICT, f"cannot tell which devices VMs use (libvirt: {exc})") from None
    try:
        sources = _format.libvirt_disk_sources(conn)
    finally:
        conn.close()
    facts = _format.gather_facts(vm_disks=sources, disks_dir=node.config.disks_dir)
    _format.format_device(device, filesystem, label, facts)
    return {
        "device": device,
        "filesystem": filesystem,
        "label": label,
        "message": f"Formatted {device} as {filesystem}",
    }


def routes(node: NodeContext) -> list[web.RouteDef]:
    """The one storage route of the agent."""

    async def post_format(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise NodeAPIError(400, INVALID_INPUT, "the body must be JSON") from None
        if not isinstance(body, dict) or set(body) - {"device", "filesystem", "label"}:
            raise NodeAPIError(400, INVALID_INPUT, "the body takes device, filesystem and label only")
        device, filesystem, label = body.get("device"), body.get("filesystem"), body.get("label")
        if not isinstance(device, str) or not isinstance(filesystem, str):
            raise NodeAPIError(400, INVALID_INPUT, "device and filesystem are required strings")
        if label is not None and not isinstance(label, str):
            raise NodeAPIError(400, INVALID_INPUT, "label must be a string")
        try:
            result = await asyncio.to_thread(_format_now, node, device, filesystem, label)
        except _format.Refused as exc:
            raise NodeAPIError(STATUS.get(exc.code, 409), exc.code, exc.message) from None
        if node.kube is not None:
            try:
                host = await node.kube.resources(Host).get(node.config.node_name)
                await node.kube.events.record(
                    host, reason="Formatted", note=result["message"], controller="agent", action="Format"
                )
            except KubeError:
                pass
        return ok(result)

    return [web.post("/storage/format", post_format)]
