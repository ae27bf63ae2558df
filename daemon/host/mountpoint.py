"""Reaching a mount point without following symlinks, and mounting through what was reached.

A mount point checked by its path and then mounted by its path can be
swapped in between: a user who owns a folder on the way replaces a directory
with a symlink, and the mount lands where the symlink points (for example on
/etc/systemd/system). Here the path is walked one component at a time with
openat2(2) and RESOLVE_NO_SYMLINKS, each step from the directory the previous
step opened, creating what is missing with mkdirat(2). The result is an
O_PATH descriptor of the very directory that was checked, and mount(8) is
given ``/proc/self/fd/N`` of it (``--no-canonicalize``): the kernel mounts on
that directory, whatever its path says by then. Unmounting opens the parent
the same way and unmounts its child with UMOUNT_NOFOLLOW (a descriptor of the
mounted directory itself would keep it busy).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

# openat2(2) is 437 on every architecture that has it (x86_64, aarch64, and the generic table).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
UMOUNT_NOFOLLOW = 0x08
STEP_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
NEW_DIR_MODE = 0o755
COMMAND_TIMEOUT = 120

_libc = ctypes.CDLL(None, use_errno=True)


class MountPointError(Exception):
    """The mount point cannot be reached safely; the message says why."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, name: str, flags: int, resolve: int) -> int:
    """A descriptor of ``name`` under ``dir_fd`` from the openat2 system call, resolved as ``resolve`` allows."""
    if platform.system() != "Linux":
        raise OSError(errno.ENOSYS, "openat2 needs Linux")
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(SYS_OPENAT2, dir_fd, os.fsencode(name), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), name)
    return int(fd)


def _step(dir_fd: int, name: str, path: str, create: bool) -> int:
    """Open the directory ``name`` in ``dir_fd`` (made when missing and ``create``), never through a symlink."""
    for _ in range(2):
        try:
            return openat2(dir_fd, name, STEP_FLAGS, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        except FileNotFoundError:
            if not create:
                raise
            # mkdirat: a symlink in its place makes it fail; made meanwhile: open what is there, same rules
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, NEW_DIR_MODE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MountPointError(f"mount point {path} goes through a symlink ({name})") from None
            if exc.errno == errno.ENOTDIR:
                raise MountPointError(f"mount point {path}: {name} is not a directory") from None
            raise
    raise MountPointError(f"mount point {path}: {name} keeps changing")


def open_directory(path: str, *, create: bool) -> int:
    """An O_PATH descriptor of the absolute ``path``, reached without any symlink (missing parts made if ``create``).

    Raises MountPointError for a symlink or a file on the way, FileNotFoundError
    when a part is missing and ``create`` is false.
    """
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        raise MountPointError(f"mount point {path!r} must be an absolute path without . or .. parts")
    fd = os.open("/", STEP_FLAGS)
    try:
        for name in parts:
            next_fd = _step(fd, name, path, create)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def opened(path: str, *, create: bool) -> Iterator[int]:
    """``open_directory`` as a context: the descriptor is closed after."""
    fd = open_directory(path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def entries(fd: int) -> list[str]:
    """The names in the directory ``fd`` is open on."""
    listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        return os.listdir(listing)
    finally:
        os.close(listing)


def _run(argv: list[str], fd: int) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False, pass_fds=(fd,))
    if result.returncode != 0:
        raise MountPointError(f"{argv[0]} failed: {(result.stderr or result.stdout).strip()[:500]}")


def mount_at(fd: int, device: str, filesystem: str, options: str) -> None:
    """mount(8) of ``device`` on the directory ``fd`` is open on (not on a path that may have moved)."""
    _run(["mount", "--no-canonicalize", "-t", filesystem, "-o", options, "--", device, f"/proc/self/fd/{fd}"], fd)


def remount_at(fd: int, options: str) -> None:
    """mount(8) -o remount of the filesystem whose root ``fd`` is open on."""
    _run(["mount", "--no-canonicalize", "-o", f"remount,{options}", "--", f"/proc/self/fd/{fd}"], fd)


def device_of(fd: int) -> str:
    """major:minor of the filesystem the descriptor is on."""
    dev = os.fstat(fd).st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def unmount_child(parent_fd: int, name: str, path: str) -> None:
    """umount2(2) of the directory ``name`` in ``parent_fd`` (a symlink there is not followed)."""
    target = os.fsencode(f"/proc/self/fd/{parent_fd}/{name}")
    if _libc.umount2(target, UMOUNT_NOFOLLOW) != 0:
        error = ctypes.get_errno()
        raise MountPointError(f"umount of {path} failed: {os.strerror(error)}")
