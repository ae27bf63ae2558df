"""A running domain's serial console and VNC display as byte channels on the agent's asyncio loop.

- :func:`open_serial`: libvirt's console stream (``virDomain.openConsole``
  on a non-blocking ``virStream``). libvirt lets one stream hold a console:
  without ``force`` a second open fails (:class:`ConsoleBusy`, also when
  ``virsh console`` holds it on the host); with ``force`` libvirt ends the
  stream that held it. What the guest writes arrives through the stream's
  event callback, which runs in libvirt's event thread (see .libvirt) and
  hands the bytes to the loop.
- :func:`open_display`: QEMU's VNC server through ``virDomain.openGraphicsFD``:
  QEMU makes a socket pair and hands one end to the agent, so the display
  never listens on any address (the domain's ``<graphics type='vnc'>`` has
  ``<listen type='none'/>``, see .domain). The channel carries the RFB byte stream.

Both raise :class:`ChannelError` with a sentence for what cannot be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

import libvirt  # type: ignore[import-untyped]

from .libvirt import Libvirt

READ_CHUNK = 65536
STREAM_EVENTS = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


class ChannelError(Exception):
    """The console or display cannot be opened; the message says why."""


class ConsoleBusy(ChannelError):
    """Another stream holds the serial console (open it with force to take it)."""


class ByteChannel(Protocol):
    """Bytes both ways between the agent and a domain's console or display."""

    async def read(self) -> bytes:
        """The next bytes from the domain; b"" once the channel has ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the domain."""
        ...

    async def close(self) -> None:
        """End the channel (the domain keeps running)."""
        ...


class SerialConsole:
    """The domain's serial console through a libvirt stream (see the module's docstring)."""

    def __init__(self, libvirt_: Libvirt, stream: libvirt.virStream) -> None:
        self.libvirt = libvirt_
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended = False

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        """In libvirt's event thread: read what is there and hand it to the loop (b"" at the end)."""
        chunks: list[bytes] = []
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            try:
                data = stream.recv(READ_CHUNK)
            except libvirt.libvirtError:
                data = b""
            if data == -2:  # nothing after all (EAGAIN)
                return
            chunks.append(data if isinstance(data, bytes) else b"")
        elif events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            chunks.append(b"")
        for chunk in chunks:
            if not chunk:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.eventRemoveCallback()
            self.loop.call_soon_threadsafe(self.received.put_nowait, chunk)

    async def read(self) -> bytes:
        """The next bytes the guest wrote; b"" once the stream ended (the domain stopped, or a takeover)."""
        if self.ended:
            return b""
        data = await self.received.get()
        if not data:
            self.ended = True
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the guest's serial port, waiting while the stream is full."""
        view = memoryview(data)
        while view and not self.ended:
            try:
                sent = await self.libvirt.call(self.stream.send, bytes(view))
            except libvirt.libvirtError as exc:
                raise ChannelError(f"the console stream failed: {exc}") from None
            if sent == -2:  # full: try again in a moment
                await asyncio.sleep(0.01)
                continue
            view = view[sent:]

    async def close(self) -> None:
        """Stop the callback and abort the stream (the console is free again)."""
        self.ended = True

        def close() -> None:
            for step in (self.stream.eventRemoveCallback, self.stream.abort):
                with contextlib.suppress(libvirt.libvirtError):
                    step()

        await asyncio.to_thread(close)


async def open_serial(libvirt_: Libvirt, dom: libvirt.virDomain, *, force: bool) -> SerialConsole:
    """The serial console of the running ``dom``; ``force`` ends whichever stream holds it now."""
    conn = libvirt_.connection()
    stream = await libvirt_.call(conn.newStream, libvirt.VIR_STREAM_NONBLOCK)
    flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else 0
    try:
        await libvirt_.call(dom.openConsole, None, stream, flags)
    except libvirt.libvirtError as exc:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        if "Active console session exists" in str(exc):
            raise ConsoleBusy("another client (such as virsh console on the host) holds the console") from None
        raise ChannelError(f"libvirt could not open the serial console: {exc.get_error_message()}") from None
    console = SerialConsole(libvirt_, stream)
    await libvirt_.call(stream.eventAddCallback, STREAM_EVENTS, console._on_event, None)
    return console


class Display:
    """QEMU's VNC server on the agent's end of a socket pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        """The next RFB bytes from QEMU; b"" at the end."""
        try:
            return await self.reader.read(READ_CHUNK)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        """RFB bytes to QEMU."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError as exc:
            raise ChannelError(f"the display's socket failed: {exc}") from None

    async def close(self) -> None:
        """Close the agent's end (QEMU drops the VNC client)."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_display(libvirt_: Libvirt, dom: libvirt.virDomain) -> Display:
    """A new VNC client connection to the running ``dom``'s display."""
    try:
        fd = await libvirt_.call(dom.openGraphicsFD, 0, 0)
    except libvirt.libvirtError as exc:
        message = exc.get_error_message() or str(exc)
        if exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_INTERNAL_ERROR):
            message = f"{message}; a VM defined before Vapor gave VMs a display gets one at its next restart"
        raise ChannelError(f"libvirt could not open the display: {message}") from None
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    return Display(reader, writer)
