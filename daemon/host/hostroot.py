"""The node's own accounts and mounts when the agent runs in a container: the work runs in the node's context.

In a container the agent's ``/`` is its image and its mount namespace its
own: ``/etc/passwd``, ``/etc/pam.d``, useradd and the login shells there are
the image's, and what it mounts only it sees. Two settings fix that, both
set by the chart:

- ``--host-root=/host`` (the node's ``/`` is mounted there): account work
  (the users routes, password checks for logins and refreshes, the account a
  terminal runs as) runs in a long-lived child, ``python -m
  vapor.agent.host.hostroot --root <root> --serve``, which imports what it needs,
  chroots into the node's root and does the work with the node's files, PAM
  configuration and programs. It takes one JSON request a line on its
  standard input and answers each with its id on a line of its standard
  output, several at once: password checks in one pool of threads, account
  lookups (a refresh's, a terminal's, the list of users) in another, the
  rest (useradd, chpasswd) in a third (vapor.loginguard), so that a burst
  of logins or a slow useradd never queues a refresh.
  A refused password returns at once (PAM's failure delay is the agent's,
  on its event loop: see vapor.loginguard). It ends when its input does
  (the agent stopped, or died); a child that ended is started again by the
  next request, and the requests it was running fail.
- ``--mount-namespace-pid=1`` (the node's init, seen through hostPID):
  Mounts are mounted and unmounted by a child that joins that process's
  mount namespace first (``--mount-ns-of <pid>``), so the mount table, the
  mount point's path and mount(8) are the node's and the node sees the result.

The requests (passwords included) travel on the child's standard input,
never on its command line. With the defaults (the agent on the host itself)
the same functions run in the agent's own pools (mounts in its default
threads). Inside the child the import
path is emptied once it has moved: a module it forgot to import beforehand
fails loudly instead of being found in the node's files.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from vapor import hostaccounts
from vapor.agentapi.errors import INTERNAL_ERROR
from vapor.loginguard import in_pool, pool

from .mountops import MountRefused, mount_in_node, unmount_in_node
from .useraccounts import AccountError, create_user, list_users, login_account, reset_password

log = logging.getLogger("vapor.agent.hostroot")

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
# Which pool of threads runs an operation (vapor.loginguard): password checks, account lookups, the rest.
POOLS = {"verify": "password", "standing": "lookup", "login_account": "lookup", "list_users": "lookup"}
ANSWER_LIMIT = 16 << 20  # bytes of one answer line (the list of a host's users)


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
            return await in_pool(POOLS.get(operation, "work"), OPERATIONS[operation], *args)
        answer = await self._in_child(operation, list(args))
        error = answer.get("error")
        if error is None:
            return answer["result"]
        if error.pop("kind") == "mount":
            raise MountRefused(error["message"], error["reason"])
        raise AccountError(**error)

    async def _in_child(self, operation: str, args: list[Any]) -> dict[str, Any]:
        """The answer of a one-shot child that moves into the node's context and runs one operation."""
        assert self.where is not None
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
        request = orjson.dumps({"operation": operation, "args": args})
        try:
            out, err = await asyncio.wait_for(child.communicate(request), CHILD_TIMEOUT)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise self.failure(f"{operation} in {self.label} did not finish in {CHILD_TIMEOUT:g} s", None) from None
        try:
            return dict(orjson.loads(out))
        except orjson.JSONDecodeError:
            details = err.decode(errors="replace").strip()[-300:]
            what = f"{operation} in {self.label} failed (exit status {child.returncode})"
            raise self.failure(what, details) from None


class HostRoot(_Runner):
    """Account work in the node's root (``--host-root``; ``/``: the agent's own, no child).

    One long-lived child serves every call (see the module's docstring);
    ``close()`` ends it. The node API holds one HostRoot for all its routes.
    """

    def __init__(self, path: Path | str = "/") -> None:
        self.path = Path(path)
        super().__init__(None if self.chroot is None else ["--root", str(self.path)], str(self.path))
        self._worker: asyncio.subprocess.Process | None = None
        # request id -> (the worker it was sent to, its answer to come)
        self._waiting: dict[int, tuple[asyncio.subprocess.Process, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._starting = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @property
    def chroot(self) -> Path | None:
        """The folder to chroot into, or None when the node's root is the agent's own."""
        return None if self.path.resolve() == Path("/") else self.path

    def failure(self, message: str, details: str | None) -> Exception:
        """An AccountError (500)."""
        return AccountError(500, INTERNAL_ERROR, message, details)

    @property
    def worker_pid(self) -> int | None:
        """The pid of the long-lived child while it runs, else None."""
        worker = self._worker
        return worker.pid if worker is not None and worker.returncode is None else None

    async def _in_child(self, operation: str, args: list[Any]) -> dict[str, Any]:
        worker = await self._running_worker()
        request_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (worker, answer)
        try:
            assert worker.stdin is not None
            worker.stdin.write(orjson.dumps({"id": request_id, "operation": operation, "args": args}) + b"\n")
            await worker.stdin.drain()
            return await asyncio.wait_for(answer, CHILD_TIMEOUT)
        except TimeoutError:
            raise self.failure(f"{operation} in {self.label} did not finish in {CHILD_TIMEOUT:g} s", None) from None
        except (ConnectionError, BrokenPipeError):
            raise self.failure(f"the account worker in {self.label} is gone", None) from None
        finally:
            self._waiting.pop(request_id, None)

    async def _running_worker(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self._worker is None or self._worker.returncode is not None:
                assert self.where is not None
                self._worker = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    __name__,
                    *self.where,
                    "--serve",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=CHILD_ENV,
                    limit=ANSWER_LIMIT,
                )  # its standard error is the agent's: what it prints lands in the agent's log
                self._reader = asyncio.create_task(self._read_answers(self._worker), name="hostroot-answers")
            return self._worker

    async def _read_answers(self, worker: asyncio.subprocess.Process) -> None:
        assert worker.stdout is not None
        try:
            while line := await worker.stdout.readline():
                try:
                    answer = orjson.loads(line)
                    _, waiting = self._waiting.get(answer.pop("id"), (None, None))
                except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
                    stray = line[:200].decode(errors="replace")
                    log.warning("the account worker wrote a line that is no answer", extra={"line": stray})
                    continue
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        finally:
            status = await worker.wait()
            gone = self.failure(f"the account worker in {self.label} ended (exit status {status})", None)
            for sent_to, waiting in list(self._waiting.values()):
                if sent_to is worker and not waiting.done():  # a worker started since has its own requests
                    waiting.set_exception(gone)

    async def close(self) -> None:
        """End the long-lived child: its input closes, it finishes what it runs (killed after 10 s)."""
        worker, self._worker = self._worker, None
        if worker is not None and worker.returncode is None:
            assert worker.stdin is not None
            worker.stdin.close()  # its input ends: it finishes what it runs and exits
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None


class NodeNamespace(_Runner):
    """Mount work in the mount namespace of process ``pid`` (``--mount-namespace-pid``; None: the agent's own)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        super().__init__(None if pid is None else ["--mount-ns-of", str(pid)], f"the mount namespace of pid {pid}")

    def failure(self, message: str, details: str | None) -> Exception:
        """A MountRefused."""
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


def _move(where: list[str]) -> None:
    """In the child: into the node's root or mount namespace; imports stop here (see the module's docstring)."""
    if where[0] == "--root":
        os.chroot(where[1])
        os.chdir("/")
    else:
        _join_mount_namespace(int(where[1]))
    sys.path.clear()


def _run(request: dict[str, Any]) -> dict[str, Any]:
    """In the child: one operation's result, or its refusal."""
    try:
        return {"result": OPERATIONS[request["operation"]](*request["args"])}
    except AccountError as exc:
        fields = {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}
        return {"error": {"kind": "account", **fields}}
    except MountRefused as exc:
        return {"error": {"kind": "mount", "message": str(exc), "reason": exc.reason}}


def _serve_once(where: list[str]) -> None:
    """In a one-shot child: read the request, move, run it, answer."""
    request = orjson.loads(sys.stdin.buffer.read())
    _move(where)
    sys.stdout.buffer.write(orjson.dumps(_run(request)))


def _serve_lines(where: list[str]) -> None:
    """In the long-lived child: move once, then answer each request line, several at once, until the input ends.

    The answers go to a copy of the standard output; the standard output
    itself becomes the standard error, so that a program or PAM module that
    prints cannot break the answers' lines.
    """
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _move(where)
    writing = threading.Lock()

    def answer(request: dict[str, Any]) -> None:
        try:
            reply = {"id": request["id"], **_run(request)}
        except Exception as exc:  # an operation that broke: its caller gets the reason, the child goes on
            message = f"{request.get('operation')} failed: {type(exc).__name__}: {exc}"
            reply = {"id": request["id"], "error": {"kind": "account", "status": 500, "code": INTERNAL_ERROR,
                                                    "message": message, "details": None}}  # fmt: skip
        line = orjson.dumps(reply) + b"\n"
        with writing:
            answers.write(line)
            answers.flush()

    for line in sys.stdin.buffer:
        request = orjson.loads(line)
        pool(POOLS.get(str(request.get("operation")), "work")).submit(answer, request)
    for kind in ("password", "lookup", "work"):  # the input ended: finish what runs, then exit
        pool(kind).shutdown(wait=True)


if __name__ == "__main__":
    if "--serve" in sys.argv[3:]:
        _serve_lines(sys.argv[1:3])
    else:
        _serve_once(sys.argv[1:3])
