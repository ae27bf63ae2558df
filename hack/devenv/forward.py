"""A TCP forwarder: ``python -m vapor.devenv.forward LISTEN_HOST:PORT TARGET_HOST:PORT``.

A node's kubelet runs in the node's network namespace, where the control
plane's 127.0.0.1 is not reachable; this process, in the machine's namespace,
listens on the address of the node's uplink and passes each connection to the
API server on loopback, byte for byte (TLS stays end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def serve(listen: str, target: str) -> None:
    """Forward every connection to ``listen`` to ``target`` until cancelled."""
    target_host, target_port = _split(target)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    host, port = _split(listen)
    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Run until killed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m vapor.devenv.forward LISTEN_HOST:PORT TARGET_HOST:PORT", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args[0], args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
