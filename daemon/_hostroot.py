"""The node's own accounts when the agent runs in a container: account work runs chrooted in the node's root.

In a container the agent's ``/`` is its image: ``/etc/passwd``, ``/etc/pam.d``,
useradd and the login shells there are the image's, not the node's. The
chart mounts the node's ``/`` at ``/host`` and passes ``--host-root=/host``.
Every operation on the node's Linux accounts (the users routes, password
checks for logins, the account a terminal runs as) then runs in a
short-lived child, ``python -m vapor.agent._hostroot <root>``, which imports
what it needs, chroots into the node's root and does the work there with the
node's own files, PAM configuration and programs. The request (passwords
included) travels on the child's standard input, never on its command line.
With ``--host-root=/`` (the default: the agent runs on the host itself) the
same functions run in a thread of the agent.

Inside the chroot the child's import path is emptied: a module it forgot to
import beforehand fails loudly instead of being found in the node's files.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from vapor import hostaccounts

from ._useraccounts import INTERNAL_ERROR, AccountError, create_user, list_users, login_account, reset_password

OPERATIONS: dict[str, Callable[..., Any]] = {
    "check_password": hostaccounts.check_password,
    "groups_of": hostaccounts.groups_of,
    "list_users": list_users,
    "create_user": create_user,
    "reset_password": reset_password,
    "login_account": login_account,
}
CHILD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
CHILD_TIMEOUT = 120.0  # useradd -m can be slow on a busy disk; PAM delays failures


class HostRoot:
    """Where the node's root is, and how to run an account operation there."""

    def __init__(self, path: Path | str = "/") -> None:
        self.path = Path(path)

    @property
    def is_own_root(self) -> bool:
        """Whether the agent's own ``/`` is the node's (no chroot needed)."""
        return self.path.resolve() == Path("/")

    async def call(self, operation: str, *args: Any) -> Any:
        """``OPERATIONS[operation](*args)`` on the node; its AccountError is raised here as it was there."""
        if self.is_own_root:
            return await asyncio.to_thread(OPERATIONS[operation], *args)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            str(self.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=CHILD_ENV,
        )
        request = orjson.dumps({"operation": operation, "args": list(args)})
        try:
            out, err = await asyncio.wait_for(child.communicate(request), CHILD_TIMEOUT)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise AccountError(
                500, INTERNAL_ERROR, f"{operation} in {self.path} did not finish in {CHILD_TIMEOUT:g} s"
            ) from None
        try:
            answer = orjson.loads(out)
        except orjson.JSONDecodeError:
            raise AccountError(
                500,
                INTERNAL_ERROR,
                f"{operation} in {self.path} failed (exit status {child.returncode})",
                err.decode(errors="replace").strip()[-300:],
            ) from None
        if "error" in answer:
            raise AccountError(**answer["error"])
        return answer["result"]


def _serve(root: str) -> dict[str, Any]:
    """In the child: read the request, chroot, run it, answer with its result or its refusal."""
    request = orjson.loads(sys.stdin.buffer.read())
    operation = OPERATIONS[request["operation"]]
    os.chroot(root)
    os.chdir("/")
    sys.path.clear()
    try:
        return {"result": operation(*request["args"])}
    except AccountError as exc:
        return {"error": {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}}


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(_serve(sys.argv[1])))
