"""Images on a host: fetch speed over loopback (agent vs curl) and overlay creation for a 2 GiB image.

Fetch: a file of random bytes served over loopback by aiohttp (sendfile, in
its own process), downloaded by the agent's own code (``imagefetch.download``:
hash while writing into the cache folder, fsync, sha256 compared, qemu-img
format check, rename) and, as the baseline, by ``curl -o /dev/null`` on the
same URL, which writes nothing, and ``curl -o <file>`` followed by ``sync`` of
that file in the same folder (what a download that lands on the disk costs
here). Overlay: ``create_overlay`` (qemu-img create
-b) on a 2 GiB raw image (allocated with fallocate), as a VM's disk gets it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vapor.agent.host.imagecache import CachedImage, ImageCache
from vapor.agent.host.imagefetch import download
from vapor.agent.host.images import create_overlay
from vapor.devenv.processes import free_port
from vapor.model import Image, ObjectMeta
from vapor.model.image import ImageSpec

FETCH_MIB = 1024
ROUNDS = 5
OVERLAY_ROUNDS = 20

SERVER = """
import sys
from aiohttp import web
folder, port = sys.argv[1], int(sys.argv[2])
app = web.Application()
app.router.add_static("/", folder)
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


def _random_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _curl(url: str, out: str = "/dev/null") -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", out, url], check=True)
    if out != "/dev/null":  # the same durability as the agent's: the file on the disk
        subprocess.run(["sync", out], check=True)
    took = time.perf_counter() - start
    if out != "/dev/null":
        os.unlink(out)
    return took


async def _agent(url: str, sha: str, cache_dir: Path) -> float:
    cache = ImageCache(cache_dir, reserve=0)
    cache.prepare()
    image = Image(
        metadata=ObjectMeta(name="bench", uid=os.urandom(8).hex()),
        spec=ImageSpec.model_validate({"source": {"http": {"url": url}}, "checksum": sha, "format": "raw"}),
    )
    start = time.perf_counter()
    cached = await download(image, cache, lambda *_: None)
    took = time.perf_counter() - start
    cached.path.unlink()
    return took


def fetch() -> None:
    """Print the agent's download rate and curl's on the same loopback URL."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        folder = Path(tmp) / "served"
        folder.mkdir()
        sha = _random_file(folder / "image.raw", FETCH_MIB)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(folder), str(port)])
        url = f"http://127.0.0.1:{port}/image.raw"
        try:
            deadline = time.monotonic() + 20
            while subprocess.run(["curl", "-sf", "-o", "/dev/null", "-r", "0-0", url]).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the loopback server did not start")
                time.sleep(0.2)
            curl = [_curl(url) for _ in range(ROUNDS)]
            to_disk = [_curl(url, str(Path(tmp) / "curl.out")) for _ in range(ROUNDS)]
            agent = [asyncio.run(_agent(url, sha, Path(tmp) / "cache")) for _ in range(ROUNDS)]
        finally:
            server.terminate()
            server.wait()
    mib_curl = FETCH_MIB / statistics.median(curl)
    mib_agent = FETCH_MIB / statistics.median(agent)
    print(f"image fetch over loopback, {FETCH_MIB} MiB, median of {ROUNDS}:")
    mib_disk = FETCH_MIB / statistics.median(to_disk)
    print(f"  curl -o /dev/null: {mib_curl:8.0f} MiB/s ({statistics.median(curl):.2f} s)")
    print(f"  curl -o <file in the same folder> + sync: {mib_disk:8.0f} MiB/s ({statistics.median(to_disk):.2f} s)")
    print(
        f"  agent (hash, write, fsync, verify, rename): {mib_agent:8.0f} MiB/s ({statistics.median(agent):.2f} s), "
        f"{100 * mib_agent / mib_curl:.0f}% of curl to /dev/null, {100 * mib_agent / mib_disk:.0f}% of curl to disk"
    )


def overlay() -> None:
    """Print the time to make a VM's overlay on a 2 GiB image."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp) / "base.raw"
        subprocess.run(["fallocate", "-l", "2G", str(base)], check=True)
        backing = CachedImage(base, "0" * 64, "raw", 2 << 30, 2 << 30)
        times = []
        for i in range(OVERLAY_ROUNDS):
            target = Path(tmp) / f"vm{i}" / "root.qcow2"
            start = time.perf_counter()
            asyncio.run(create_overlay(target, backing, 10 << 30))
            times.append(time.perf_counter() - start)
    print(f"overlay creation for a 2 GiB image (grown to 10 GiB), {OVERLAY_ROUNDS} rounds:")
    print(f"  median {1000 * statistics.median(times):.1f} ms, max {1000 * max(times):.1f} ms (limit 100 ms)")


def main() -> None:
    """Both measurements."""
    overlay()
    fetch()
