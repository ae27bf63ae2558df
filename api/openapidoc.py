"""``python -m vapor.gateway.openapidoc FILE``: write the gateway's OpenAPI document without a cluster.

The web console's build (``make ui``) turns it into TypeScript types
(openapi-typescript), so a change of the API that the console's code does not
follow fails the console's type check instead of a user's page.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from .app import create_app


async def document() -> dict[str, Any]:
    """The document /openapi.json serves; the app's start-up (the cluster's clients) is not run."""
    response = await create_app().test_client().get("/openapi.json")
    assert response.status_code == 200, response.status_code
    found: dict[str, Any] = await response.get_json()
    return found


def main(argv: list[str] | None = None) -> int:
    """Write the document to the file named, or to stdout."""
    args = sys.argv[1:] if argv is None else argv
    text = orjson.dumps(asyncio.run(document()), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if args:
        Path(args[0]).write_bytes(text)
    else:
        sys.stdout.buffer.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
