"""The node's own accounts and mounts when the agent runs in a container: the work runs in the node's context.

In a container the agent's ``/`` is its image and its mount namespace its
own: ``/etc/passwd``, ``/etc/pam.d``, useradd and the login shells there are
the image's, and what it mounts only it sees. Two settings fix that, both
set by the chart:

- ``--host-root=/host`` (the node's ``/`` is mounted there): account work
  (the users routes, password checks for logins, the account a terminal runs
  as) runs in a short-lived child, ``python -m vapor.agent._hostroot --root
  <root>``, which imports what it needs, chroots into the node's root and
  does the work with the node's files, PAM configuration and programs.
- ``--mount-namespace-pid=1`` (the node's init, seen through hostPID):
  Mounts are mounted and unmounted by a child that joins that process's
  mount namespace first (``--mount-ns-of <pid>``), so the mount table, the
  mount point's path and mount(8) are the node's and the node sees the result.

The request (passwords included) travels on the child's standard input,
never on its command line. With the defaults (the agent on the host itself)
the same functions run in a thread of the agent. Inside the child the import
path is emptied once it has moved: a module it forgot to import beforehand
fails loudly instead of being found in the node's files.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from vapor import hostaccounts

from ._mountops import MountRefused, mount_in_node, unmount_in_node
from ._useraccounts import INTERNAL_ERROR, AccountError, create_user, list_users, login_account, reset_password

OPERATIONS: dict[str, Callable[..., Any]] = {
    "verify": hostaccounts.verify,
    "standing": hostaccounts.standing,
    "list_users": list_users,
    "create_user": create_user,
    "reset_password": reset_password,
    "login_account": login_account,
    "mount_in_node": mount_in_node,
    "unmount_in_node": unmount_in_node,
}
CHILD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
CHILD_TIMEOUT = 180.0  # useradd -m or mkfs can be slow on a busy disk; PAM delays failures
CLONE_NEWNS = 0x00020000


class _Runner:
    """Runs an operation in a thread (``where`` is None) or in a child moved to the node's context."""

    def __init__(self, where: list[str] | None, label: str) -> None:
        self.where = where
        self.label = label

    def failure(self, message: str, details: str | None) -> Exception:
        """What a child that did not answer becomes (each runner raises its own area's refusal)."""
        raise NotImplementedError

    async def call(self, operation: str, *args: Any) -> Any:
        """``OPERATIONS[operation](*args)``; its AccountError or MountRefused is raised here as it was there."""
        if self.where is None:
            return await asyncio.to_thread(OPERATIONS[operation], *args)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            *self.where,
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
            raise self.failure(f"{operation} in {self.label} did not finish in {CHILD_TIMEOUT:g} s", None) from None
        try:
            answer = orjson.loads(out)
        except orjson.JSONDecodeError:
            details = err.decode(errors="replace").strip()[-300:]
            what = f"{operation} in {self.label} failed (exit status {child.returncode})"
            raise self.failure(what, details) from None
        error = answer.get("error")
        if error is None:
            return answer["result"]
        if error.pop("kind") == "mount":
            raise MountRefused(error["message"])
        raise AccountError(**error)


class HostRoot(_Runner):
    """Account work in the node's root (``--host-root``; ``/``: the agent's own, no child)."""

    def __init__(self, path: Path | str = "/") -> None:
        self.path = Path(path)
        super().__init__(None if self.chroot is None else ["--root", str(self.path)], str(self.path))

    @property
    def chroot(self) -> Path | None:
        """The folder to chroot into, or None when the node's root is the agent's own."""
        return None if self.path.resolve() == Path("/") else self.path

    def failure(self, message: str, details: str | None) -> Exception:
        return AccountError(500, INTERNAL_ERROR, message, details)


class NodeNamespace(_Runner):
    """Mount work in the mount namespace of process ``pid`` (``--mount-namespace-pid``; None: the agent's own)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        super().__init__(None if pid is None else ["--mount-ns-of", str(pid)], f"the mount namespace of pid {pid}")

    def failure(self, message: str, details: str | None) -> Exception:
        return MountRefused(message + (f": {details}" if details else ""))


def _join_mount_namespace(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNS) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into the mount namespace of pid {pid}: {os.strerror(error)}")
    finally:
        os.close(fd)
    os.chdir("/")  # setns moved the root and the working directory to the namespace's


def _serve(where: list[str]) -> dict[str, Any]:
    """In the child: read the request, move into the node's context, run it, answer with its result or refusal."""
    request = orjson.loads(sys.stdin.buffer.read())
    operation = OPERATIONS[request["operation"]]
    if where[0] == "--root":
        os.chroot(where[1])
        os.chdir("/")
    else:
        _join_mount_namespace(int(where[1]))
    sys.path.clear()
    try:
        return {"result": operation(*request["args"])}
    except AccountError as exc:
        fields = {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}
        return {"error": {"kind": "account", **fields}}
    except MountRefused as exc:
        return {"error": {"kind": "mount", "message": str(exc)}}


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(_serve(sys.argv[1:3])))
