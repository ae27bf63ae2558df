"""What a log line may say about a name someone typed: a mark, never the name.

A refused login's user name is often a password typed into the wrong field,
so the gateway and the agent never write it in clear. ``name_mark`` turns it
into ``name#<12 hex digits>``: a keyed hash (HMAC-SHA256 under a key made
when the process starts), so one process's lines can be matched by name
(the same name always gives the same mark) but the name cannot be got back,
not even by hashing a dictionary of guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_KEY = secrets.token_bytes(32)


def name_mark(name: str) -> str:
    """A stand-in for ``name`` in log lines (see the module's docstring)."""
    digest = hmac.new(_KEY, name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"name#{digest[:12]}"
