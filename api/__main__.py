"""``vapor-gateway``: serve the REST gateway with Hypercorn.

Settings come from VAPOR_* environment variables (see ``vapor.gateway.DEFAULTS``);
the flags below override them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from vapor.logs import add_format_flag, setup_logging

from .app import create_app

WEBSOCKET_MAX_MESSAGE = 1 << 20  # bytes of one WebSocket message (larger: closed with 1009)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="vapor-gateway", description=__doc__)
    parser.add_argument("--bind", default="0.0.0.0:8080", help="address:port to listen on (default 0.0.0.0:8080)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then in-cluster)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    add_format_flag(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    overrides = {"KUBECONFIG": args.kubeconfig} if args.kubeconfig else None
    app = create_app(overrides)
    config = Config()
    config.bind = [args.bind]
    config.accesslog = None  # paths only would be safe, but keep the log to what the gateway says
    config.errorlog = logging.getLogger("hypercorn.error")  # Hypercorn's own lines in the one format too
    # Hypercorn holds a WebSocket message whole before the app sees it; the first one comes before the
    # token is checked. Ours are small JSON (a terminal's paste at most): 16 MiB by default, 1 MiB here.
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE
    asyncio.run(_serve(app, config))
    return 0


async def _serve(app: object, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
