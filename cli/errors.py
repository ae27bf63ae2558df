"""The one failure type of vaporctl: a sentence for stderr and an exit code, never a traceback."""

from __future__ import annotations

import sys

API_ERROR = 1  # the server refused, or could not be reached
USAGE_ERROR = 2  # as click's own usage errors

# What a user should do next, by the contract's error code.
_HINTS = {
    "UNAUTHORIZED": "run `vaporctl login`",
}


class CLIError(Exception):
    """A failure shown as ``error: <message>`` on stderr; exit code 1 unless told otherwise."""

    def __init__(self, message: str, exit_code: int = API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def show(self) -> None:
        """Print the message on stderr."""
        print(f"error: {self.message}", file=sys.stderr, flush=True)


class APIFailure(CLIError):
    """The gateway answered with the contract's error envelope."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        self.status = status
        self.code = code
        self.details = details
        text = message
        if status == 403:
            text = f"permission denied: {message}"
        elif status == 404:
            text = f"not found: {message}"
        hint = _HINTS.get(code)
        if hint and hint not in text:
            text = f"{text}; {hint}"
        if details and status not in (401, 403, 404):
            text = f"{text} ({details})"
        super().__init__(text)


def not_logged_in(server: str, why: str = "you are not logged in") -> CLIError:
    """The error of a command that needs a login it does not have."""
    return CLIError(f"{why} to {server}; run `vaporctl login --server {server}`")


def warn(message: str) -> None:
    """A line on stderr that does not end the command."""
    print(f"warning: {message}", file=sys.stderr)
