"""A Python base image made here from a Debian rootfs, cached under ~/.cache/vapor/image.

No image registry is reachable on the test machines, so the official
python:3.11-slim-bookworm cannot be pulled. Debian's mirror is reachable:
debootstrap makes a minimal bookworm rootfs with Debian's python3.11 (and
python3-venv, so the Containerfile's ``python3 -m venv`` works as it does in the
official image), and the test loads it with ``docker import``. The tarball is
keyed by the recipe below: change the recipe and a new one is made; otherwise
every session (and CI after it, on the same machine) reuses it.

Run ``python -m tests.image.base`` to make the cached tarball ahead of a test run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("tests.image")

CACHE = Path(os.environ.get("VAPOR_CACHE", Path.home() / ".cache" / "vapor")) / "image"

# Everything that decides what the base rootfs holds. Bump "revision" to force a rebuild.
RECIPE: dict[str, object] = {
    "revision": 2,
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
    "include": ["python3", "python3-venv", "ca-certificates"],
    # The same apt sources as the official Debian-based images (updates and security).
    # As Debian's slim images (the official python:*-slim's base): no docs, manuals or translations.
    "dpkg_excludes": [
        "path-exclude /usr/share/doc/*",
        "path-include /usr/share/doc/*/copyright",
        "path-exclude /usr/share/man/*",
        "path-exclude /usr/share/info/*",
        "path-exclude /usr/share/groff/*",
        "path-exclude /usr/share/lintian/*",
        "path-exclude /usr/share/locale/*",
    ],
    "sources": [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
}


def recipe_key() -> str:
    """A short hash of the recipe: the cache key and the image tag."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(name: str, timeout: float = 1800.0) -> Iterator[None]:
    """An exclusive lock on CACHE/<name>.lock, shared by every session on the machine."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: another session held the lock for {timeout:.0f}s") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def rootfs_tarball() -> Path:
    """The cached rootfs tarball of the recipe, made with debootstrap when missing (a few minutes)."""
    key = recipe_key()
    tarball = CACHE / f"debian-python-{key}.tar"
    with cache_lock("rootfs"):
        if tarball.exists():
            return tarball
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
        try:
            root = work / "root"
            started = time.monotonic()
            log.info("debootstrap %s into %s (cached as %s)", RECIPE["suite"], root, tarball.name)
            subprocess.run(
                [
                    "debootstrap",
                    f"--variant={RECIPE['variant']}",
                    "--include=" + ",".join(RECIPE["include"]),  # type: ignore[arg-type]
                    str(RECIPE["suite"]),
                    str(root),
                    str(RECIPE["mirror"]),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            (root / "etc/apt/sources.list").write_text("\n".join(RECIPE["sources"]) + "\n")  # type: ignore[arg-type]
            excludes: list[str] = RECIPE["dpkg_excludes"]  # type: ignore[assignment]
            (root / "etc/dpkg/dpkg.cfg.d/slim").write_text("\n".join(excludes) + "\n")
            for folder in ("man", "info", "groff", "lintian", "locale"):
                for child in (root / "usr/share" / folder).glob("*"):
                    _remove(child)
            for child in (root / "usr/share/doc").glob("*/*"):
                if child.name != "copyright":
                    _remove(child)
            # What an image should not carry: apt's lists and caches, logs of the bootstrap.
            for junk in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
                for child in (root / junk).glob("*"):
                    if child.is_file() or child.is_symlink():
                        child.unlink()
            partial = tarball.with_suffix(".partial")
            subprocess.run(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."], check=True
            )
            partial.rename(tarball)
            log.info("base rootfs made in %.0fs: %d MiB", time.monotonic() - started, tarball.stat().st_size >> 20)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    print(rootfs_tarball())
