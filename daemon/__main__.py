"""``vapor-agent``: run the agent of this node until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

from vapor.logs import setup_logging

from ._agent import run
from ._config import parse_args


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the agent, return the exit code."""
    config = parse_args(argv)
    setup_logging(config.log_level, config.log_format)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
