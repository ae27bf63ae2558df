"""``vapor-agent``: run the agent of this node until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

from ._lean import bare_packages

bare_packages()  # before anything imports pyroute2 or kubernetes: only the submodules the agent uses load

from vapor.logs import setup_logging  # noqa: E402

from ._agent import run  # noqa: E402
from ._config import parse_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the agent, return the exit code."""
    config = parse_args(argv)
    setup_logging(config.log_level, config.log_format)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
