"""What the container endpoints share: the check of a container reference, before any host is asked.

The runtime error codes (DOCKER_ERROR, RUNTIME_ERROR, NO_RUNTIME_AVAILABLE)
are the agent's own 502 and 503 answers, passed on as they are; they are
declared with every other code in vapor.agentapi.errors.
"""

from __future__ import annotations

import re

from vapor.agentapi.dockerspec import CONTAINER_REF_PATTERN
from vapor.agentapi.errors import INVALID_INPUT

from ._errors import APIError


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
