"""What the container endpoints share: the agent's runtime error codes and the check of a container reference.

The codes are the agent's own 502 and 503 answers about container runtimes
(daemon/host/containers.py), passed on as they are; a container reference is
checked before any host is asked.
"""

from __future__ import annotations

import re

from vapor.dockerspec import CONTAINER_REF_PATTERN

from ._errors import INVALID_INPUT, APIError

DOCKER_ERROR = "DOCKER_ERROR"
RUNTIME_ERROR = "RUNTIME_ERROR"
NO_RUNTIME_AVAILABLE = "NO_RUNTIME_AVAILABLE"


def container_ref(container_id: str) -> str:
    """``container_id`` if it can name a container; INVALID_INPUT otherwise (checked before any host is asked)."""
    if not re.match(CONTAINER_REF_PATTERN, container_id):
        raise APIError(
            400,
            INVALID_INPUT,
            f"{container_id[:80]!r} is not a container id or name",
            "letters, digits, _ . - (at most 128), starting with a letter or digit",
        )
    return container_id
